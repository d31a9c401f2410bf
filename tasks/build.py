"""Stage 3: Self-Rewarding preference pairs: per prompt, highest vs lowest mean judge score.

A prompt gives no pair when fewer than two candidates have a score, when all scores tie, when
the margin is below `pairs.min_margin`, or when the best and worst texts are identical; each
dropped prompt is recorded with its reason.
"""
from __future__ import annotations

from dataclasses import dataclass

from selfimprove.storage.db import Store
from selfimprove.storage.records import Pair, PairDrop
from selfimprove.tasks.results import BuildResult


@dataclass(frozen=True)
class Ranked:
    """A candidate as pair selection sees it: its text and its combined self-reward."""
    generation_id: str
    sample_index: int
    text: str
    score: float | None  # the combined reward; None when a weighted signal is missing (unparsed judge)


def select_pair(candidates: list[Ranked], min_margin: float) -> tuple[Ranked, Ranked] | str:
    """(chosen, rejected) or the reason no pair is made. Ties on the best (worst) score go to the
    lowest (highest) sample index, so the choice is deterministic.

    >>> c = [Ranked("a", 0, "1", 4.0), Ranked("b", 1, "2", 1.0), Ranked("c", 2, "3", 1.0)]
    >>> chosen, rejected = select_pair(c, 0.5)
    >>> (chosen.generation_id, rejected.generation_id)
    ('a', 'c')
    >>> select_pair(c, 5.0)
    'margin_below_min'
    """
    scored = [c for c in candidates if c.score is not None]
    if len(scored) < 2:
        return "fewer_than_two_scored"
    best = max(scored, key=lambda c: (c.score, -c.sample_index))
    worst = min(scored, key=lambda c: (c.score, -c.sample_index))
    if best.score == worst.score:
        return "all_tied"
    if best.score - worst.score < min_margin:
        return "margin_below_min"
    if best.text.strip() == worst.text.strip():
        return "identical_text"
    return best, worst


def scored_candidates(store: Store, run_id: str, iteration: int, purpose: str) -> dict[str, list[Ranked]]:
    """prompt_id -> candidates of one source, each with its combined reward (signal "reward")."""
    by_prompt: dict[str, list[Ranked]] = {}
    for c in store.candidates(run_id, iteration, [purpose]):
        by_prompt.setdefault(c.prompt_id, []).append(Ranked(c.generation_id, c.sample_index, c.text, c.reward))
    return by_prompt


def pair_row(run_id: str, iteration: int, prompt_id: str, chosen: Ranked, rejected: Ranked,
             chosen_source: str = "current", rejected_source: str = "current") -> Pair:
    return Pair(f"{run_id}:{iteration}:{prompt_id}", run_id, iteration, prompt_id, chosen.generation_id,
                rejected.generation_id, chosen.score, rejected.score, chosen.score - rejected.score,
                chosen_source=chosen_source, rejected_source=rejected_source)


def build_pairs(store: Store, cfg, run_id: str, iteration: int) -> BuildResult:
    """Self-Rewarding: best vs worst of the current model's candidates, by combined reward."""
    pairs, drops = [], []
    for prompt_id, candidates in scored_candidates(store, run_id, iteration, "train").items():
        result = select_pair(candidates, cfg.pairs.min_margin)
        if isinstance(result, str):
            drops.append(PairDrop(run_id, iteration, prompt_id, result))
        else:
            pairs.append(pair_row(run_id, iteration, prompt_id, *result))
    return save_pairs(store, run_id, iteration, pairs, drops)


def save_pairs(store: Store, run_id: str, iteration: int, pairs: list[Pair], drops: list[PairDrop]) -> BuildResult:
    store.add(pairs)
    store.add(drops)
    correct = store.correctness(run_id, iteration)
    reasons: dict[str, int] = {}
    for d in drops:
        reasons[d.reason] = reasons.get(d.reason, 0) + 1
    # With a verifiable answer: how often the self-reward put a right answer over a wrong one.
    labelled = [p for p in pairs if correct[p.chosen_generation_id] is not None]
    return BuildResult(pairs=len(pairs), prompts=len(pairs) + len(drops), dropped=len(drops),
                       drop_reasons=dict(sorted(reasons.items())),
                       mean_margin=sum(p.margin for p in pairs) / len(pairs) if pairs else None,
                       chosen_correct_rate=_rate([correct[p.chosen_generation_id] for p in labelled]),
                       rejected_correct_rate=_rate([correct[p.rejected_generation_id] for p in labelled]))


def _rate(flags: list[bool]) -> float | None:
    return sum(bool(f) for f in flags) / len(flags) if flags else None
