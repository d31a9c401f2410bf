"""Stage 5: held-out evaluation of a model: greedy accuracy, maj@k, pass@k, response length.

Greedy and sampled answers are stored as generations (purpose eval_greedy / eval_sample), so
every metric can be recomputed in SQL. Extra sources (e.g. GSM8K test) get greedy accuracy.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from models.engines import SamplingSpec
from models.loading import model_hash
from storage.db import Store, now
from tasks.generate import generate_samples


def majority_answer(answers: list[str | None]) -> str | None:
    """Most frequent non-empty answer; a tie goes to the answer seen first.

    >>> majority_answer(["3", "4", "4", None])
    '4'
    >>> majority_answer(["5", "6"])
    '5'
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == top)


def heldout_metrics(greedy: list[dict], sampled: list[dict]) -> dict:
    """Metrics from generation rows (each with prompt_id, extracted_answer, correct, num_tokens)."""
    metrics = {"items": len(greedy),
               "accuracy_greedy": sum(bool(g["correct"]) for g in greedy) / max(len(greedy), 1),
               "mean_response_tokens": sum(g["num_tokens"] for g in greedy) / max(len(greedy), 1),
               "no_answer_rate": sum(g["extracted_answer"] is None for g in greedy) / max(len(greedy), 1)}
    if sampled:
        by_prompt: dict[str, list[dict]] = {}
        for s in sampled:
            by_prompt.setdefault(s["prompt_id"], []).append(s)
        maj = pass_k = 0
        for rows in by_prompt.values():
            winner = majority_answer([r["extracted_answer"] for r in rows])
            maj += any(r["extracted_answer"] == winner and r["correct"] for r in rows) if winner else 0
            pass_k += any(r["correct"] for r in rows)
        metrics.update(maj_at_k=maj / len(by_prompt), pass_at_k=pass_k / len(by_prompt))
    return metrics


def evaluate_model(store: Store, cfg, run_id: str, iteration: int, model_dir: str | Path) -> dict:
    ec = cfg.eval
    heldout = store.prompts(run_id, "heldout")
    greedy_spec = SamplingSpec(n=1, temperature=0.0, top_p=1.0, max_tokens=ec.max_tokens, seed=cfg.seed)
    sample_spec = SamplingSpec(n=ec.k, temperature=ec.temperature, top_p=1.0, max_tokens=ec.max_tokens, seed=cfg.seed)
    generate_samples(store, cfg, run_id, iteration, model_dir, heldout, greedy_spec, "eval_greedy")
    if ec.k > 1:
        generate_samples(store, cfg, run_id, iteration, model_dir, heldout, sample_spec, "eval_sample")
    results = {"heldout": heldout_metrics(store.generations(run_id, iteration, "eval_greedy"),
                                          store.generations(run_id, iteration, "eval_sample"))}
    extra = store.query("SELECT DISTINCT split FROM prompts WHERE run_id = ? AND split NOT IN ('train', 'heldout')",
                        [run_id])
    for split in (r["split"] for r in extra):
        purpose = f"eval_{split}"
        generate_samples(store, cfg, run_id, iteration, model_dir, store.prompts(run_id, split), greedy_spec, purpose)
        results[split] = heldout_metrics(store.generations(run_id, iteration, purpose), [])
    digest = model_hash(model_dir)
    store.append("evaluations", [
        {"run_id": run_id, "iteration": iteration, "split": split, "metric": name, "value": float(value),
         "model_hash": digest, "created_at": now()}
        for split, metrics in results.items() for name, value in metrics.items()])
    # Held-out metrics under their plain names ("accuracy_greedy"), others as "gsm8k/accuracy_greedy".
    return {(name if split == "heldout" else f"{split}/{name}"): value
            for split, metrics in results.items() for name, value in metrics.items()}
