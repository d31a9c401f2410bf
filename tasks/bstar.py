"""B-STaR (Zeng et al. 2024): pick the sampling temperature and reward threshold per iteration.

Each iteration the pipeline samples a probe subset of training prompts at several temperatures
and scores every sample with a reward. For each (temperature, threshold) the balance score
rewards configurations that keep many distinct correct responses (exploration) while keeping the
selected set clean (exploitation); the best configuration then drives generation and filtering.
Everything here is pure Python over `ProbeSample` lists: one inner list per query.

`correct` is None when a prompt has no verifiable answer. The balance score and `select_samples`
treat None as "not correct"; a caller that wants to score such prompts must substitute a
correctness of its own (e.g. self-reward above a cut-off) before calling. The monitoring figures
in `exploration_exploitation` instead skip None for precision and recall, so they stay measured
against ground truth only.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeSample:
    text: str
    answer: str | None
    reward: float
    correct: bool | None  # None: no verifiable answer for this prompt


def select_samples(queries: list[list[ProbeSample]], threshold: float,
                   require_answer: bool = False) -> list[list[int]]:
    """Per query, indices of the samples with reward >= threshold, one per stripped text (the first
    occurrence is kept). These are the SFT examples, so duplicates would only re-weight a response.
    require_answer (pairs.chosen_must_answer) also leaves out samples with no extracted answer or
    blank text: they are never trained towards.

    >>> s = lambda t, r: ProbeSample(t, None, r, None)
    >>> select_samples([[s("a", 1.0), s("b", 0.2), s(" a ", 0.9), s("c", 0.5)]], 0.5)
    [[0, 3]]
    >>> select_samples([[s("", 1.0), ProbeSample("x = 4", "4", 0.9, None)]], 0.5, require_answer=True)
    [[1]]
    """
    selected = []
    for samples in queries:
        seen: set[str] = set()
        kept = []
        for i, s in enumerate(samples):
            key = s.text.strip()
            if require_answer and (s.answer is None or not key):
                continue
            if s.reward >= threshold and key not in seen:
                seen.add(key)
                kept.append(i)
        selected.append(kept)
    return selected


def balance_score(queries: list[list[ProbeSample]], threshold: float, n_star: int = 8) -> float:
    """Mean over queries of min(n'_i / n_star, 1) * n'_i / n_i, where n_i counts the unique (by
    stripped text) responses with reward >= threshold and n'_i the correct ones among them. The
    first factor credits up to n_star distinct correct answers (exploration), the second the share
    of the selection that is correct (exploitation). A query with nothing selected scores 0.
    Duplicates are resolved as in `select_samples`, so the score describes exactly the SFT data.

    >>> s = lambda t, r, c: ProbeSample(t, None, r, c)
    >>> balance_score([[s("a", 1.0, True), s("b", 1.0, False)], [s("c", 0.0, True)]], 0.5, n_star=2)
    0.125
    """
    if n_star < 1:
        raise ValueError(f"n_star must be >= 1, got {n_star}")
    if not queries:
        return 0.0
    total = 0.0
    for samples, kept in zip(queries, select_samples(queries, threshold)):
        if not kept:
            continue
        n_correct = sum(samples[i].correct is True for i in kept)
        total += min(n_correct / n_star, 1.0) * n_correct / len(kept)
    return total / len(queries)


def kept_share(queries: list[list[ProbeSample]], threshold: float) -> float | None:
    """Share of the scored samples whose reward clears the threshold; 1.0 means the reward filtered
    nothing (B-STaR then reduces to training on every sample). None when nothing was scored.

    >>> s = lambda r: ProbeSample("t", None, r, None)
    >>> kept_share([[s(0.2), s(0.9)], [s(0.5), s(float("-inf"))]], 0.5)
    0.6666666666666666
    >>> kept_share([[s(0.2), s(0.9)]], 0.2)
    1.0
    """
    scored = [s.reward for q in queries for s in q if s.reward != float("-inf")]
    return sum(r >= threshold for r in scored) / len(scored) if scored else None


def exploration_exploitation(queries: list[list[ProbeSample]], threshold: float) -> dict:
    """The figures B-STaR monitors. pass_at_k and distinct_correct_per_query measure exploration
    (distinct correct answers per query, unique by stripped text); reward_precision / recall
    measure how well the reward separates right from wrong, over samples whose `correct` is known;
    selected_per_query counts every sample at or above the threshold, duplicates included.

    >>> s = lambda t, r, c: ProbeSample(t, None, r, c)
    >>> m = exploration_exploitation([[s("a", 0.9, True), s("b", 0.8, False), s("c", 0.1, True)]], 0.5)
    >>> (m["pass_at_k"], m["reward_precision"], m["reward_recall"], m["selected_per_query"])
    (1.0, 0.5, 0.5, 2.0)
    """
    n = len(queries)
    labelled = [s for samples in queries for s in samples if s.correct is not None]
    above = [s for s in labelled if s.reward >= threshold]
    right = [s for s in labelled if s.correct]
    return {
        "pass_at_k": sum(any(s.correct is True for s in q) for q in queries) / n if n else 0.0,
        "distinct_correct_per_query":
            sum(len({s.text.strip() for s in q if s.correct is True}) for q in queries) / n if n else 0.0,
        "reward_precision": sum(s.correct for s in above) / len(above) if above else None,
        "reward_recall": sum(s.reward >= threshold for s in right) / len(right) if right else None,
        "selected_per_query":
            sum(s.reward >= threshold for q in queries for s in q) / n if n else 0.0,
    }


def grid_search(probes: dict[float, list[list[ProbeSample]]], thresholds: list[float],
                n_star: int = 8) -> tuple[tuple[float, float], list[dict]]:
    """Balance score for every (temperature, threshold); returns the best pair and the table.

    Ties on balance go to the lower temperature, then the higher threshold: when two configs are
    equally balanced, prefer the less noisy sampling and the stricter, more precise filter.
    Balances are compared rounded to 12 digits so float noise cannot break a real tie.

    >>> s = lambda t, r, c: ProbeSample(t, None, r, c)
    >>> probes = {0.7: [[s("a", 1.0, True)]], 1.0: [[s("a", 1.0, True)]]}
    >>> best, table = grid_search(probes, [0.5, 0.0], n_star=1)
    >>> best, [(r["temperature"], r["threshold"], r["balance"]) for r in table]
    ((0.7, 0.5), [(0.7, 0.0, 1.0), (0.7, 0.5, 1.0), (1.0, 0.0, 1.0), (1.0, 0.5, 1.0)])
    """
    if not probes or not thresholds:
        raise ValueError("grid_search needs at least one temperature and one threshold")
    table = []
    for temperature in sorted(probes):
        queries = probes[temperature]
        for threshold in sorted(set(thresholds)):
            figures = exploration_exploitation(queries, threshold)
            table.append({"temperature": temperature, "threshold": threshold,
                          "balance": balance_score(queries, threshold, n_star),
                          "selected_per_query": figures["selected_per_query"],
                          "precision": figures["reward_precision"]})
    best = max(table, key=lambda r: (round(r["balance"], 12), -r["temperature"], r["threshold"]))
    return (best["temperature"], best["threshold"]), table


def default_thresholds(rewards: list[float], count: int = 5) -> list[float]:
    """Candidate thresholds from the observed rewards.

    Binary 0/1 rewards (a verifier) give [0.5]: every threshold in (0, 1] selects the same samples
    and one <= 0 selects all of them, so 0.5 is the only filter worth probing. Otherwise the
    thresholds are the observed rewards at `count` evenly spaced quantile levels from 0 (keep
    everything: the unfiltered baseline) to 1 (keep only the top reward), taking the observed value
    at or below each level so every threshold is a reward that actually occurs; repeats (common
    with discrete judge scores) are dropped, so fewer than `count` may come back. No rewards: [].

    >>> default_thresholds([0.0, 1.0, 1.0])
    [0.5]
    >>> default_thresholds([0.1, 0.2, 0.3, 0.4, 0.5], count=3)
    [0.1, 0.3, 0.5]
    >>> default_thresholds([1.0, 1.0, 1.0, 2.0, 5.0], count=5)
    [1.0, 2.0, 5.0]
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if not rewards:
        return []
    if set(rewards) <= {0.0, 1.0}:
        return [0.5]
    ordered = sorted(rewards)
    last = len(ordered) - 1
    levels = [i / (count - 1) for i in range(count)] if count > 1 else [0.5]
    # int() floors: the "lower" quantile. The small epsilon keeps i/(count-1)*last from landing a
    # hair below an exact index because of float rounding.
    return sorted({ordered[int(q * last + 1e-9)] for q in levels})
