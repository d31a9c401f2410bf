"""Generation behind one interface, two engines: vLLM (the engine) and transformers (the fallback).

Both take token-id prompts and return, per prompt, n `Sample`s with text, token ids, per-token
logprobs of the sampled tokens and a finish reason. One live engine is kept per process: a new
iteration's weights are loaded into it in place (vLLM `reload_weights`, ~0.1 s) instead of a
restart (~30 s for the seed model). On a GPU the live engine gives its memory to training
(`engine.release_for_training`: vLLM sleeps, or the engine is closed) and the next `get_engine`
wakes it with the new weights (release_engine_for_training below).
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
    weights: str = ""  # the model dir whose weights the engine holds ("" = none we can name)
    release: str = "keep"  # what release_engine_for_training does to it (resolve_release)
    asleep: bool = False


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
               device: str = "auto", release_for_training: str = "auto"):
    """The process's live engine with `model_dir`'s weights loaded (reusing it when it can; a
    sleeping one is woken with them).

    `device` (model.device) places the transformers engine; vLLM runs where its build does.
    `release_for_training` (engine.release_for_training) is resolved here, once per engine: vLLM
    must be built with sleep mode to sleep later."""
    name = resolve_engine_name(name)
    model_dir = str(Path(model_dir).resolve())
    parallel = {"tensor_parallel_size": tensor_parallel_size, "pipeline_parallel_size": pipeline_parallel_size,
                "data_parallel_size": data_parallel_size}
    release = _release_for(release_for_training, name, device)
    key = (name, dtype, max_model_len, seed, tuple(parallel.values()), device, release)
    if _LIVE.engine is not None and _LIVE.key == key:
        if _LIVE.asleep:
            _LIVE.engine.wake(model_dir)  # always with weights loaded from disk: sleep discarded them
            _LIVE.asleep, _LIVE.weights = False, model_dir
        elif _LIVE.weights != model_dir:
            _LIVE.engine.load_weights(model_dir)
            _LIVE.weights = model_dir
        return _LIVE.engine
    close_engine()
    if name == "vllm":
        from selfimprove.models.vllm_engine import VllmEngine

        engine = VllmEngine(model_dir, dtype, max_model_len, seed, gpu_memory_utilization=gpu_memory_utilization,
                            sleep_mode=release == "sleep", **parallel)
    elif name == "transformers":
        engine = HfEngine(model_dir, dtype, seed, batch_size, device)
    else:
        raise ValueError(f"engine.name: unknown engine {name!r}")
    _LIVE.engine, _LIVE.key, _LIVE.weights, _LIVE.release, _LIVE.asleep = engine, key, model_dir, release, False
    return engine


def close_engine() -> None:
    if _LIVE.engine is not None:
        _LIVE.engine.close()
    _LIVE.engine, _LIVE.key, _LIVE.weights, _LIVE.release, _LIVE.asleep = None, (), "", "keep", False


RELEASES = ("auto", "sleep", "close", "keep")


def resolve_release(requested: str, engine: str, gpu_problem: str | None, sleep_problem: str | None) -> str:
    """What an engine does when training starts: "sleep", "close" or "keep" (engine.release_for_training).

    `engine` is the resolved engine name; `gpu_problem` is None when the engine runs on a GPU (else
    why not), `sleep_problem` None when vLLM's sleep mode works here. auto: a vLLM engine on a GPU
    sleeps (weights and KV cache freed, woken in place with the trained weights: no ~30 s restart);
    the transformers engine on a GPU closes (reloading it costs what loading new weights does
    anyway); on CPU every engine is kept, as always (RAM is not what CPU training runs short of).

    >>> resolve_release("auto", "vllm", None, None), resolve_release("auto", "transformers", None, None)
    ('sleep', 'close')
    >>> resolve_release("auto", "vllm", "torch sees no CUDA device", "torch sees no CUDA device")
    'keep'
    >>> resolve_release("sleep", "transformers", None, None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    selfimprove.config_yaml.ConfigError: engine.release_for_training: 'sleep' is vLLM's sleep mode; the ...
    """
    from selfimprove.config import ConfigError

    where = "engine.release_for_training"
    if requested not in RELEASES:
        raise ConfigError(f"{where}: {requested!r} is not one of {sorted(RELEASES)}")
    if requested == "sleep":
        if engine != "vllm":
            raise ConfigError(f"{where}: 'sleep' is vLLM's sleep mode; the {engine} engine has none "
                              "(use auto, close or keep)")
        if sleep_problem:
            raise ConfigError(f"{where}: 'sleep' needs vLLM's sleep mode, which is not available here: "
                              f"{sleep_problem} (use auto, close or keep)")
    if requested != "auto":
        return requested
    if gpu_problem:
        return "keep"
    return "sleep" if engine == "vllm" and not sleep_problem else "close"


def _release_for(requested: str, engine: str, device: str) -> str:
    """resolve_release with this machine's answers, asked only when they matter (close and keep need
    none), so a CPU run never imports vLLM's platform code for it."""
    if requested in ("close", "keep"):
        return resolve_release(requested, engine, None, None)
    if engine == "vllm":
        from selfimprove.models.device import cuda_vllm_problem
        from selfimprove.models.vllm_engine import sleep_mode_problem

        gpu_problem = cuda_vllm_problem()
        return resolve_release(requested, engine, gpu_problem, gpu_problem or sleep_mode_problem())
    from selfimprove.models.device import resolve_device

    gpu_problem = None if resolve_device(device) == "cuda" else "the transformers engine runs on cpu"
    return resolve_release(requested, engine, gpu_problem, "the transformers engine has no sleep mode")


def release_engine_for_training(close: bool = False) -> str:
    """Free the live engine's memory before training, as its engine.release_for_training resolved:
    "sleep" (vLLM sleep level 2: weights and KV cache leave the GPU; the next get_engine wakes it and
    loads the weights it asks for), "close" (shut down; the next get_engine builds a new one),
    "keep" (nothing), or "none" (no live engine, or it already sleeps). `close=True` closes whatever
    the setting says (GRPO's colocated vLLM engine must not share the process with another one).
    """
    if _LIVE.engine is None or (_LIVE.asleep and not close):
        return "none"
    mode = "close" if close else _LIVE.release
    if mode == "sleep":
        _LIVE.engine.sleep()
        # Level 2 discarded the weights: whatever dir the next get_engine names (the old one too) is loaded.
        _LIVE.asleep, _LIVE.weights = True, ""
    elif mode == "close":
        close_engine()
    return mode


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
        if self.device == "cuda":
            from selfimprove.models.device import release_cuda_memory

            release_cuda_memory()
