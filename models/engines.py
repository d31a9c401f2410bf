"""Generation behind one interface, two engines: vLLM (the engine) and transformers (the fallback).

Both take token-id prompts and return, per prompt, n `Sample`s with text, token ids, per-token
logprobs of the sampled tokens and a finish reason. One live engine is kept per process: a new
iteration's weights are loaded into it in place (vLLM `reload_weights`, ~0.1 s) instead of a
restart (~30 s for the seed model).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
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
               gpu_memory_utilization: float = 0.8, pipeline_parallel_size: int = 1, data_parallel_size: int = 1,
               device: str = "auto"):
    """The process's live engine with `model_dir`'s weights loaded (reusing it when it can).

    `device` (model.device) places the transformers engine; vLLM runs where its build does."""
    name = resolve_engine_name(name)
    model_dir = str(Path(model_dir).resolve())
    parallel = {"tensor_parallel_size": tensor_parallel_size, "pipeline_parallel_size": pipeline_parallel_size,
                "data_parallel_size": data_parallel_size}
    key = (name, dtype, max_model_len, seed, tuple(parallel.values()), device)
    if _LIVE.engine is not None and _LIVE.key == key:
        if _LIVE.weights != model_dir:
            _LIVE.engine.load_weights(model_dir)
            _LIVE.weights = model_dir
        return _LIVE.engine
    close_engine()
    if name == "vllm":
        from selfimprove.models.vllm_engine import VllmEngine

        engine = VllmEngine(model_dir, dtype, max_model_len, seed, gpu_memory_utilization=gpu_memory_utilization,
                            **parallel)
    elif name == "transformers":
        engine = HfEngine(model_dir, dtype, seed, batch_size, device)
    else:
        raise ValueError(f"engine.name: unknown engine {name!r}")
    _LIVE.engine, _LIVE.key, _LIVE.weights = engine, key, model_dir
    return engine


def close_engine() -> None:
    if _LIVE.engine is not None:
        _LIVE.engine.close()
    _LIVE.engine, _LIVE.key, _LIVE.weights = None, (), ""


class HfEngine:
    """Batched `transformers.generate`, left-padded; logprobs from the processed scores."""

    name = "transformers"

    def __init__(self, model_dir, dtype, seed, batch_size, device: str = "auto"):
        from selfimprove.models.device import resolve_device
        from selfimprove.models.loading import load_model, load_tokenizer

        self.dtype, self.seed, self.batch_size = dtype, seed, batch_size
        self.device = resolve_device(device)  # once: every reload lands where the first load did
        self.tokenizer = load_tokenizer(model_dir)
        self.model = load_model(model_dir, dtype, device=self.device).eval()

    def load_weights(self, model_dir: str) -> None:
        from selfimprove.models.loading import load_model

        if self.device == "cuda":
            self.model = None  # the old weights leave the GPU before the new ones arrive (no two copies)
        self.model = load_model(model_dir, self.dtype, device=self.device).eval()

    def generate(self, prompts: list[list[int]], spec: SamplingSpec,
                 seeds: list[int] | None = None) -> list[list[Sample]]:
        """n samples per prompt, in prompt order (see `stream`)."""
        return [samples for _, samples in self.stream(prompts, spec, seeds)]

    def stream(self, prompts: list[list[int]], spec: SamplingSpec,
               seeds: list[int] | None = None) -> Iterator[tuple[int, list[Sample]]]:
        """(prompt index, its n samples), in order. With `seeds`, each prompt is generated alone after
        seeding torch with its seed, so its samples do not depend on the batch; without, prompts go
        batch_size at a time."""
        import torch

        if seeds is None:
            torch.manual_seed(spec.seed)
            for start in range(0, len(prompts), self.batch_size):
                batch = self._generate_batch(prompts[start:start + self.batch_size], spec)
                yield from enumerate(batch, start=start)
            return
        for index, (prompt, seed) in enumerate(zip(prompts, seeds)):
            torch.manual_seed(seed)
            yield index, self._generate_batch([prompt], spec)[0]

    def _generate_batch(self, batch: list[list[int]], spec: SamplingSpec) -> list[list[Sample]]:
        import torch

        tok = self.tokenizer
        configured = self.model.generation_config.eos_token_id
        eos = set(configured if isinstance(configured, list) else [configured]) | {tok.eos_token_id}
        eos.discard(None)
        results: list[list[Sample]] = []
        width = max(len(p) for p in batch)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in batch], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=self.model.device)
        sampling = spec.temperature > 0
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, do_sample=sampling, max_new_tokens=spec.max_tokens,
                num_return_sequences=spec.n, temperature=spec.temperature if sampling else None,
                top_p=spec.top_p if sampling else None, top_k=None, pad_token_id=tok.pad_token_id,
                eos_token_id=sorted(eos), return_dict_in_generate=True, output_scores=True)
        # One copy to the host for the whole batch (a no-op on CPU), not one per row.
        scores = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True).cpu()
        new = out.sequences[:, width:].cpu()
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

    def next_token_logprobs(self, prompts: list[list[int]], token_ids: list[int]) -> list[dict[int, float]]:
        from selfimprove.models.scoring import requested_logprobs

        return requested_logprobs(self.model, prompts, self.tokenizer.pad_token_id, token_ids)

    def close(self) -> None:
        del self.model
