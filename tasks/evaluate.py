"""Stage 5: held-out evaluation of a model: greedy accuracy, maj@k, pass@k, response length.

Greedy and sampled answers are stored as generations (purpose eval_greedy / eval_sample), so
every metric can be recomputed in SQL. Extra sources (e.g. GSM8K test) get greedy accuracy.
From iteration 1 on, greedy accuracy is also compared, paired, with the seed's and the previous
iteration's (tasks/compare.py).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from selfimprove.models.engines import SamplingSpec
from selfimprove.models.loading import model_hash
from selfimprove.storage.db import Store
from selfimprove.storage.records import Evaluation, Generation
from selfimprove.tasks.compare import heldout_differences
from selfimprove.tasks.generate import generate_samples
from selfimprove.tasks.results import EvalResult


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


def heldout_metrics(greedy: list[Generation], sampled: list[Generation]) -> dict:
    """Metrics from the greedy and sampled generations of the held-out items."""
    metrics = {"items": len(greedy),
               "accuracy_greedy": sum(bool(g.correct) for g in greedy) / max(len(greedy), 1),
               "mean_response_tokens": sum(g.num_tokens for g in greedy) / max(len(greedy), 1),
               "no_answer_rate": sum(g.extracted_answer is None for g in greedy) / max(len(greedy), 1)}
    if sampled:
        by_prompt: dict[str, list[Generation]] = {}
        for s in sampled:
            by_prompt.setdefault(s.prompt_id, []).append(s)
        maj = pass_k = 0
        for rows in by_prompt.values():
            winner = majority_answer([r.extracted_answer for r in rows])
            maj += any(r.extracted_answer == winner and r.correct for r in rows) if winner else 0
            pass_k += any(r.correct for r in rows)
        metrics.update(maj_at_k=maj / len(by_prompt), pass_at_k=pass_k / len(by_prompt))
    return metrics


def evaluate_model(store: Store, cfg, run_id: str, iteration: int, model_dir: str | Path) -> EvalResult:
    ec = cfg.eval
    heldout = store.prompts(run_id, "heldout")
    greedy_spec = SamplingSpec(n=1, temperature=0.0, top_p=1.0, max_tokens=ec.max_tokens, seed=cfg.seed)
    sample_spec = SamplingSpec(n=ec.k, temperature=ec.temperature, top_p=1.0, max_tokens=ec.max_tokens, seed=cfg.seed)
    generate_samples(store, cfg, run_id, iteration, model_dir, heldout, greedy_spec, "eval_greedy")
    if ec.k > 1:
        generate_samples(store, cfg, run_id, iteration, model_dir, heldout, sample_spec, "eval_sample")
    results = {"heldout": heldout_metrics(store.generations(run_id, iteration, "eval_greedy"),
                                          store.generations(run_id, iteration, "eval_sample"))}
    # Paired differences vs the seed and the previous iteration (diff_vs_seed, _low, _high, ...):
    # an accuracy change is only a gain when its 95% interval excludes zero.
    results["heldout"].update(heldout_differences(store, run_id, iteration))
    for split in store.extra_eval_splits(run_id):
        purpose = f"eval_{split}"
        generate_samples(store, cfg, run_id, iteration, model_dir, store.prompts(run_id, split), greedy_spec, purpose)
        results[split] = heldout_metrics(store.generations(run_id, iteration, purpose), [])
    digest = model_hash(model_dir)
    store.add([Evaluation(run_id, iteration, split, name, float(value), digest)
               for split, metrics in results.items() for name, value in metrics.items()])
    # Held-out metrics under their plain names ("accuracy_greedy"), others as "gsm8k/accuracy_greedy".
    return EvalResult(values={(name if split == "heldout" else f"{split}/{name}"): float(value)
                              for split, metrics in results.items() for name, value in metrics.items()})
