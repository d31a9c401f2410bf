"""model.device: the resolver and the config field (run everywhere), and every transformers forward
pass on CUDA against the same pass on CPU, on the tiny model (marked gpu, skipped without CUDA).
At the end, one GPU for generation and training: the engine gives its memory to training and comes
back with the trained weights, and GRPO samples with TRL's vLLM colocate mode (skipped without CUDA
vLLM; their CPU-side logic is tests/test_gpu_sharing.py).

CUDA scores in bfloat16 and CPU in float32 (models/device.py), so CUDA results agree with CPU to a
tolerance (1e-2), not exactly. On the random tiny model bf16 moves next-token logprobs by ~5e-3
(measured with bf16 on CPU), half the tolerance; the sharpened copy used for self-certainty and
entropy moves them by ~1e-3.
"""
import shutil

import pytest
import torch

from selfimprove.config import ConfigError, config_from_dict
from selfimprove.models import engines
from selfimprove.models.device import cuda_vllm_problem, resolve_device, scoring_dtype
from selfimprove.models.engines import HfEngine, SamplingSpec, close_engine, get_engine, release_engine_for_training
from selfimprove.models.loading import chat_prompt_ids, load_model, load_tokenizer
from selfimprove.models.scoring import (
    next_token_logprobs,
    release_scoring_model,
    requested_logprobs,
    scoring_model,
    transformers_scorer,
)
from selfimprove.storage.records import Candidate
from selfimprove.tasks.common import engine_for, store_for
from selfimprove.tasks.grpo import grpo_generation
from selfimprove.tasks.judge import judge_logprob, judge_scorer
from selfimprove.tasks.judge_pairwise import judge_groups
from selfimprove.tasks.judge_prompt import digit_token_ids, judge_prompt
from selfimprove.tasks.prepare import prepare_run
from selfimprove.tasks.score import confidence_stats
from selfimprove.tasks.train import train_next_model
from tests.conftest import tiny_config_tree

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="torch sees no CUDA device")
NO_CUDA_VLLM = cuda_vllm_problem()  # None where vLLM runs on the GPU
needs_cuda_vllm = pytest.mark.skipif(NO_CUDA_VLLM is not None, reason=f"no CUDA vLLM: {NO_CUDA_VLLM}")
TOL = 1e-2
QUESTIONS = ["Calculate 3 + 4.", "What is 12 - 5?", "Calculate 7 + 8."]
ANSWERS = [["7", "Answer: 7", "I think 8"], ["7", "17", "Answer: 5"], ["15", "Answer: 15", "no idea"]]


def config(tmp_path, model_dir, device: str, **over):
    tree = tiny_config_tree(tmp_path, model_dir, **over)
    tree["model"]["device"] = device
    return config_from_dict(tree)


# --- everywhere: the resolver and the config field --------------------------------------------------

def test_auto_resolves_to_cuda_only_when_torch_sees_one():
    assert resolve_device("auto") == ("cuda" if CUDA else "cpu")
    assert resolve_device("cpu") == "cpu"
    assert (scoring_dtype("cpu"), scoring_dtype("cuda")) == ("float32", "bfloat16")


def test_cuda_without_cuda_is_a_config_error_naming_model_device(monkeypatch, tmp_path, tiny_model_dir):
    # The only mock here: this machine's answer to "is there a GPU?" (so the check runs on GPU machines too).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = r"^model\.device: 'cuda' was asked for, but torch .* sees no CUDA device .*set model\.device: auto or cpu"
    with pytest.raises(ConfigError, match=message):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"
    # Every path that starts a transformers pass resolves the setting first: the error comes from there.
    with pytest.raises(ConfigError, match=message):
        scoring_model(tiny_model_dir, "cuda")
    with pytest.raises(ConfigError, match=message):
        HfEngine(str(tiny_model_dir), "float32", seed=0, batch_size=2, device="cuda")
    with pytest.raises(ConfigError, match=message):
        judge_scorer(config(tmp_path, tiny_model_dir, "cuda", judge={"backend": "transformers"}), tiny_model_dir)


def test_model_device_config_field(tmp_path, tiny_model_dir):
    tree = tiny_config_tree(tmp_path, tiny_model_dir)
    assert config_from_dict(tree).model.device == "auto"
    # "cuda" is accepted when the config is read on any machine (it is checked where a pass starts),
    # so a GPU run's config can be written and validated on a CPU box.
    assert config(tmp_path, tiny_model_dir, "cuda").model.device == "cuda"
    with pytest.raises(ConfigError, match=r"^model\.device: 'gpu' is not one of \['auto', 'cpu', 'cuda'\]"):
        config(tmp_path, tiny_model_dir, "gpu")


def test_release_leaves_the_cpu_scoring_model_cached(tiny_model_dir):
    model, _ = scoring_model(tiny_model_dir, "cpu")
    assert (model.device.type, model.dtype) == ("cpu", torch.float32)  # CPU scoring as it always was
    assert release_scoring_model() is False
    assert scoring_model(tiny_model_dir, "cpu")[0] is model


# --- on CUDA: the same passes as on CPU, within TOL -------------------------------------------------

@pytest.fixture(scope="module")
def sharp_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with every logit x4 (final norm scaled): the random model is nearly uniform
    (self-certainty ~0.03), which would make agreement on confidence signals trivial."""
    out = tmp_path_factory.mktemp("sharp") / "model"
    shutil.copytree(tiny_model_dir, out)
    model = load_model(out)
    with torch.no_grad():
        model.model.norm.weight.mul_(4.0)
    model.save_pretrained(out, safe_serialization=True)
    return out


@pytest.mark.gpu
@needs_cuda
def test_scoring_logprobs_on_cuda_match_cpu(tiny_model_dir):
    cpu_model, tokenizer = scoring_model(tiny_model_dir, "cpu")
    cuda_model, _ = scoring_model(tiny_model_dir, "cuda")
    assert (cuda_model.device.type, cuda_model.dtype) == ("cuda", torch.bfloat16)
    # Ragged lengths: left padding in one batch, as the judges send them.
    prompts = [chat_prompt_ids(tokenizer, judge_prompt(q, a)) for q, answers in zip(QUESTIONS, ANSWERS)
               for a in answers] + [chat_prompt_ids(tokenizer, "Hi")]
    pad = tokenizer.pad_token_id
    cpu = next_token_logprobs(cpu_model, prompts, pad)
    cuda = next_token_logprobs(cuda_model, prompts, pad)
    assert (cuda.device.type, cuda.dtype) == ("cuda", torch.float32)  # upcast before log_softmax
    assert (cuda.cpu() - cpu).abs().max().item() < TOL
    assert (cpu.max(-1).values - cpu.min(-1).values).min().item() > 0.5  # TOL is small against the values
    ids = sorted({t for options in digit_token_ids(tokenizer).values() for t in options})
    via_scorer = transformers_scorer(tiny_model_dir, "cuda")(prompts, ids)
    for got, want in zip(via_scorer, requested_logprobs(cpu_model, prompts, pad, ids)):
        assert got.keys() == want.keys()
        assert list(got.values()) == pytest.approx(list(want.values()), abs=TOL)


@pytest.mark.gpu
@needs_cuda
def test_confidence_signals_on_cuda_match_cpu(sharp_model_dir):
    tokenizer = load_tokenizer(sharp_model_dir)
    texts = ["The answer is 7.", "Answer: 7", "12 - 5 = 7 so 7", "no idea", ""]
    candidates = [Candidate(f"g{i}", f"p{i % 3}", "train", i, text, tokenizer(text, add_special_tokens=False).input_ids,
                            None, None, QUESTIONS[i % 3], QUESTIONS[i % 3]) for i, text in enumerate(texts)]
    cpu = confidence_stats(sharp_model_dir, candidates, "cpu")
    cuda = confidence_stats(sharp_model_dir, candidates, "cuda")
    assert scoring_model(sharp_model_dir, "cuda")[0].device.type == "cuda"  # what confidence_stats used
    for c in candidates:
        assert cuda[c.generation_id] == pytest.approx(cpu[c.generation_id], abs=TOL)
    certainties = [cpu[c.generation_id][0] for c in candidates if c.token_ids]
    assert max(certainties) - min(certainties) > 5 * TOL  # the candidates do differ, by more than TOL


@pytest.mark.gpu
@needs_cuda
def test_transformers_engine_generates_on_cuda(tiny_model_dir):
    """float32 engine (the tests' model.dtype): greedy tokens equal CPU's and logprobs agree; bf16
    (the default model.dtype) only has to generate: on a nearly uniform random model, bf16 rounding
    can flip a greedy near-tie, which says nothing about the device placement under test."""
    tokenizer = load_tokenizer(tiny_model_dir)
    prompts = [chat_prompt_ids(tokenizer, q) for q in QUESTIONS]
    greedy = SamplingSpec(n=1, temperature=0.0, max_tokens=8)
    reference = HfEngine(str(tiny_model_dir), "float32", seed=0, batch_size=2, device="cpu").generate(prompts, greedy)
    try:
        engine = get_engine("transformers", tiny_model_dir, dtype="float32", batch_size=2, device="cuda")
        assert engine.model.device.type == "cuda"
        out = engine.generate(prompts, greedy)
        assert sum(len(s.token_ids) for (s,) in reference) > 0
        for (got,), (want,) in zip(out, reference):
            assert got.token_ids == want.token_ids and got.finish_reason == want.finish_reason
            assert got.logprobs == pytest.approx(want.logprobs, abs=1e-3)
        bf16 = get_engine("transformers", tiny_model_dir, dtype="bfloat16", batch_size=2, device="cuda")
        assert (bf16.model.device.type, bf16.model.dtype) == ("cuda", torch.bfloat16)
        sampled = bf16.generate(prompts, SamplingSpec(n=2, temperature=1.0, max_tokens=8, seed=1))
        assert [len(samples) for samples in sampled] == [2] * len(prompts)
        assert sum(len(s.token_ids) for samples in sampled for s in samples) > 0
        assert all(lp <= 1e-5 for samples in sampled for s in samples for lp in s.logprobs)
    finally:
        close_engine()


@pytest.mark.gpu
@needs_cuda
def test_transformers_judge_on_cuda_matches_cpu(tmp_path, tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    groups = list(zip(QUESTIONS, ANSWERS))
    scores = {}
    for device in ("cpu", "cuda"):
        for mode in ("logprob", "verify"):
            cfg = config(tmp_path, tiny_model_dir, device, judge={"mode": mode, "backend": "transformers"})
            texts = [judge_prompt(q, a, mode) for q, answers in groups for a in answers]
            scores[device, mode] = [s for ((_, s),) in judge_logprob(judge_scorer(cfg, tiny_model_dir), tokenizer,
                                                                      texts, mode)]
        scorer = judge_scorer(config(tmp_path, tiny_model_dir, device, judge={"backend": "transformers"}),
                              tiny_model_dir)
        scores[device, "pairwise"] = [s for verdicts in judge_groups(scorer, tokenizer, groups) for _, s in verdicts]
    assert scoring_model(tiny_model_dir, "cuda")[0].dtype == torch.bfloat16  # the judge's scorer ran on CUDA
    for mode in ("logprob", "verify", "pairwise"):
        assert scores["cuda", mode] == pytest.approx(scores["cpu", mode], abs=TOL)


@pytest.mark.gpu
@needs_cuda
def test_release_frees_the_cuda_scoring_model(tiny_model_dir):
    model, _ = scoring_model(tiny_model_dir, "cuda")
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    del model
    before = torch.cuda.memory_allocated()
    assert release_scoring_model() is True
    assert torch.cuda.memory_allocated() <= before - size  # nothing else held it: the weights are gone
    assert release_scoring_model() is False  # nothing left to release


# --- on CUDA: one GPU for generation and training -----------------------------------------------------

def greedy_outputs(engine, tokenizer):
    prompts = [chat_prompt_ids(tokenizer, q) for q in QUESTIONS]
    return [(s.token_ids, s.logprobs) for (s,) in engine.generate(prompts, SamplingSpec(n=1, temperature=0.0,
                                                                                     max_tokens=8))]


def assert_same_outputs(got, want):
    assert [ids for ids, _ in got] == [ids for ids, _ in want]
    for (_, got_lps), (_, want_lps) in zip(got, want):
        assert got_lps == pytest.approx(want_lps, abs=1e-3)


@pytest.mark.gpu
@needs_cuda_vllm
def test_vllm_sleeps_for_training_and_wakes_with_the_trained_weights(tiny_model_dir, sharp_model_dir):
    """auto = sleep on CUDA vLLM: the memory goes back, the same engine wakes with the weights asked
    for (the trained ones, or the old ones: level 2 discarded both) and generates what a fresh engine
    on those weights generates."""
    tokenizer = load_tokenizer(tiny_model_dir)
    setup = {"dtype": "bfloat16", "max_model_len": 1024, "gpu_memory_utilization": 0.3}
    close_engine()
    try:
        engine = get_engine("vllm", tiny_model_dir, **setup)
        assert engines._LIVE.release == "sleep"
        before = greedy_outputs(engine, tokenizer)
        free_awake, total = torch.cuda.mem_get_info()
        assert release_engine_for_training() == "sleep"
        # Weights and KV cache left: most of the engine's 0.3 of the GPU is free again.
        assert torch.cuda.mem_get_info()[0] - free_awake > 0.15 * total
        assert release_engine_for_training() == "none"
        assert get_engine("vllm", sharp_model_dir, **setup) is engine  # woken in place, not rebuilt
        trained = greedy_outputs(engine, tokenizer)
        release_engine_for_training()
        assert get_engine("vllm", tiny_model_dir, **setup) is engine
        again = greedy_outputs(engine, tokenizer)
    finally:
        close_engine()
    try:
        fresh = greedy_outputs(get_engine("vllm", sharp_model_dir, release_for_training="keep", **setup), tokenizer)
    finally:
        close_engine()
    assert_same_outputs(trained, fresh)
    assert_same_outputs(again, before)
    assert [lps for _, lps in trained] != pytest.approx([lps for _, lps in before], abs=1e-2)  # new weights showed


@pytest.mark.gpu
@needs_cuda
def test_the_transformers_engine_is_closed_for_training_on_cuda(tiny_model_dir):
    close_engine()
    try:
        engine = get_engine("transformers", tiny_model_dir, dtype="float32", batch_size=2, device="cuda")
        assert engines._LIVE.release == "close"
        size = sum(p.numel() * p.element_size() for p in engine.model.parameters())
        before = torch.cuda.memory_allocated()
        del engine
        assert release_engine_for_training() == "close"
        assert engines._LIVE.engine is None
        assert torch.cuda.memory_allocated() <= before - size  # the weights left the GPU
        again = get_engine("transformers", tiny_model_dir, dtype="float32", batch_size=2, device="cuda")
        assert greedy_outputs(again, load_tokenizer(tiny_model_dir))
    finally:
        close_engine()


@pytest.mark.gpu
@needs_cuda_vllm
def test_grpo_trains_with_vllm_colocate_then_the_engine_comes_back(tmp_path, tiny_model_dir):
    """auto = vLLM colocate on CUDA vLLM (reward without a judge): the live engine is closed, TRL's
    engine samples every group, is shut down after training, and a new engine generates in the same
    process from the trained model."""
    tree = tiny_config_tree(tmp_path / "data", tiny_model_dir)
    tree["model"]["dtype"] = "bfloat16"  # the engines' GPU default (training loads float32 regardless)
    tree["engine"].update(name="vllm", gpu_memory_utilization=0.3)
    tree["train"].update(algorithm="grpo", batch_size=6)
    tree["reward"] = {"signals": [{"name": "majority_vote", "weight": 1.0}]}
    cfg = config_from_dict(tree)
    assert grpo_generation(cfg) == "vllm"
    store = store_for(cfg)
    prepare_run(store, cfg, "g")
    close_engine()
    try:
        engine_for(cfg, tiny_model_dir)  # live, as the evaluation before training leaves it
        result = train_next_model(store, cfg, "g", 1, tiny_model_dir, tmp_path / "out")
        assert engines._LIVE.engine is None  # closed for TRL's colocated engine
        rows = store.generations("g", 1, "grpo")
        assert result.steps >= 1 and len(rows) == result.steps * 6
        after = greedy_outputs(engine_for(cfg, tmp_path / "out"), load_tokenizer(tiny_model_dir))
        assert sum(len(ids) for ids, _ in after) > 0
    finally:
        close_engine()
