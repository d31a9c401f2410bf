"""Paired comparisons of two models' greedy answers on the same items (tasks/stats.py does the
statistics): what evaluation stores as diff_vs_seed / diff_vs_prev and what `show` reports."""
from __future__ import annotations

from selfimprove.storage.db import Store
from selfimprove.tasks.stats import PairedDifference, paired_difference

SEED = (0, "eval_greedy")
BOOTSTRAPPED = (0, "bootstrap_eval_greedy")  # the judge bootstrap's model on the held-out items (tasks/bootstrap.py)


def greedy_difference(store: Store, run_id: str, old: tuple[int, str], new: tuple[int, str]) -> PairedDifference | None:
    """new - old greedy accuracy, each side an (iteration, purpose) of greedy generations, over the
    items both answered with a reference (NULL correctness is skipped, not counted wrong)."""
    return paired_difference(store.greedy_correctness(run_id, *old), store.greedy_correctness(run_id, *new))


def difference_metrics(name: str, diff: PairedDifference | None) -> dict[str, float]:
    """{name, name_low, name_high}, or nothing when there was nothing to compare."""
    return {} if diff is None else {name: diff.difference, f"{name}_low": diff.low, f"{name}_high": diff.high}


def heldout_differences(store: Store, run_id: str, iteration: int) -> dict[str, float]:
    """Held-out greedy accuracy of `iteration` vs the seed and vs the model it started from (the previous
    iteration's, or for iteration 1 the bootstrapped one when there is one), with 95% CIs."""
    if iteration < 1:
        return {}
    new = (iteration, "eval_greedy")
    previous = (iteration - 1, "eval_greedy")
    if iteration == 1 and store.greedy_correctness(run_id, 0, BOOTSTRAPPED[1]):
        previous = BOOTSTRAPPED  # iteration 1 started from the bootstrapped model, not the seed
    return {**difference_metrics("diff_vs_seed", greedy_difference(store, run_id, SEED, new)),
            **difference_metrics("diff_vs_prev", greedy_difference(store, run_id, previous, new))}
