"""Teacher-forced forward passes: the model's full next-token distribution after a prompt.

Used by the forced-format judge (read P("0".."5") after "Score:") and by any signal that needs
exact probabilities rather than an engine's top-k logprobs.
"""
from __future__ import annotations

from pathlib import Path

_CACHE: dict = {}


def scoring_model(model_dir: str | Path, dtype: str = "float32"):
    """(model, tokenizer) for `model_dir`, kept loaded until another dir is asked for."""
    from models.loading import load_model, load_tokenizer

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
