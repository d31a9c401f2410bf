"""Teacher-forced forward passes: the model's full next-token distribution after a prompt.

Used by the forced-format judges (read P("0".."5") after "Score:", P("A") vs P("B")) and by the
confidence signals (self-certainty, entropy), offline and inside GRPO alike. One dtype for all of
them, float32: scores then do not depend on which path computed them, and small differences
between candidates are not rounded away (bf16 keeps ~3 significant digits).
"""
from __future__ import annotations

from pathlib import Path

_CACHE: dict = {}
SCORING_DTYPE = "float32"


def scoring_model(model_dir: str | Path, dtype: str = SCORING_DTYPE):
    """(model, tokenizer) for `model_dir`, kept loaded until another dir is asked for."""
    from selfimprove.models.loading import load_model, load_tokenizer

    key = (str(Path(model_dir).resolve()), dtype)
    if _CACHE.get("key") != key:
        _CACHE.clear()
        _CACHE.update(key=key, model=load_model(model_dir, dtype).eval(), tokenizer=load_tokenizer(model_dir))
    return _CACHE["model"], _CACHE["tokenizer"]


def next_token_logprobs(model, prompts: list[list[int]], pad_id: int, batch_size: int = 16):
    """Log-probabilities [len(prompts), vocab] of the token following each prompt (float32)."""
    import torch

    rows = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        width = max(len(p) for p in batch)
        # Left padding puts every prompt's last token in the final column.
        ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1, :]
        rows.append(torch.log_softmax(logits.float(), dim=-1))
    return torch.cat(rows) if rows else torch.empty(0)


def requested_logprobs(model, prompts: list[list[int]], pad_id: int, token_ids: list[int]) -> list[dict[int, float]]:
    """[{token id: log P(token | prompt)}] for the requested ids: what an engine's
    `next_token_logprobs` returns, from a teacher-forced transformers pass."""
    rows = next_token_logprobs(model, prompts, pad_id)
    return [{tid: float(row[tid]) for tid in token_ids} for row in rows]


def transformers_scorer(model_dir: str | Path):
    """next_token_logprobs(prompts, token_ids) from the float32 scoring model of model_dir."""
    model, tokenizer = scoring_model(model_dir)
    return lambda prompts, token_ids: requested_logprobs(model, prompts, tokenizer.pad_token_id, token_ids)
