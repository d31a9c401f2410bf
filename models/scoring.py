"""Teacher-forced forward passes: the model's full next-token distribution after a prompt.

Used by the forced-format judges (read P("0".."5") after "Score:", P("A") vs P("B")) and by the
confidence signals (self-certainty, entropy), offline and inside GRPO alike. One dtype for all of
them on a device (models/device.py: float32 on CPU, bfloat16 on CUDA): scores then do not depend
on which path computed them. Logits are upcast to float32 before log_softmax on either device, but
bf16 weights still round: on the seed model (bf16 vs float32, measured on CPU) judge scores moved
by up to ~0.1 on the 0-5 scale and self-certainty by ~0.2, so CUDA and CPU runs are comparable in
distribution, not score for score.
"""
from __future__ import annotations

from pathlib import Path

_CACHE: dict = {}


def scoring_model(model_dir: str | Path, device: str = "auto"):
    """(model, tokenizer) for `model_dir` on `device` (a model.device setting), kept loaded until
    another dir or device is asked for (or release_scoring_model frees it for training)."""
    from selfimprove.models.device import resolve_device, scoring_dtype
    from selfimprove.models.loading import load_model, load_tokenizer

    device = resolve_device(device)
    dtype = scoring_dtype(device)
    key = (str(Path(model_dir).resolve()), device, dtype)
    if _CACHE.get("key") != key:
        _drop()  # the old model leaves the GPU before the new one arrives
        _CACHE.update(key=key, device=device, model=load_model(model_dir, dtype, device=device).eval(),
                      tokenizer=load_tokenizer(model_dir))
    return _CACHE["model"], _CACHE["tokenizer"]


def release_scoring_model() -> bool:
    """Drop the cached scoring model when it sits on CUDA and return its memory to the driver; True
    when something was dropped. Called before training, which needs that memory for weights,
    gradients and optimizer state; it comes back only if nothing else still holds the model (a
    judge's scorer closure lives as long as its stage). On CPU the cache is left as it was: RAM is
    not what CPU training runs short of, and CPU behaviour stays exactly as before."""
    if _CACHE.get("device") != "cuda":
        return False
    _drop()
    return True


def _drop() -> None:
    device = _CACHE.get("device")
    _CACHE.clear()
    if device == "cuda":
        from selfimprove.models.device import release_cuda_memory

        release_cuda_memory()


def next_token_logprobs(model, prompts: list[list[int]], pad_id: int, batch_size: int = 16):
    """Log-probabilities [len(prompts), vocab] of the token following each prompt (float32, on
    the model's device)."""
    import torch

    rows = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        width = max(len(p) for p in batch)
        # Left padding puts every prompt's last token in the final column.
        ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in batch], device=model.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1, :]
        rows.append(torch.log_softmax(logits.float(), dim=-1))
    return torch.cat(rows) if rows else torch.empty(0)


def requested_logprobs(model, prompts: list[list[int]], pad_id: int, token_ids: list[int]) -> list[dict[int, float]]:
    """[{token id: log P(token | prompt)}] for the requested ids: what an engine's
    `next_token_logprobs` returns, from a teacher-forced transformers pass."""
    import torch

    if not prompts:
        return []
    rows = next_token_logprobs(model, prompts, pad_id)
    # One device-to-host copy of the requested columns, not one sync per (row, token) on a GPU.
    picked = rows[:, torch.tensor(token_ids, dtype=torch.long, device=rows.device)].tolist()
    return [dict(zip(token_ids, values)) for values in picked]


def transformers_scorer(model_dir: str | Path, device: str = "auto"):
    """next_token_logprobs(prompts, token_ids) from the scoring model of model_dir on `device`."""
    model, tokenizer = scoring_model(model_dir, device)
    return lambda prompts, token_ids: requested_logprobs(model, prompts, tokenizer.pad_token_id, token_ids)
