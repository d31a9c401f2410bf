"""Stage 3: Self-Rewarding preference pairs: per prompt, highest vs lowest mean judge score.

A prompt gives no pair when fewer than two candidates have a score, when all scores tie, when
the margin is below `pairs.min_margin`, or when the best and worst texts are identical; each
dropped prompt is recorded with its reason. With `pairs.chosen_must_answer` (the default) the
chosen side is the best candidate that has an extracted answer and non-empty text: an empty or
answer-less response is never trained towards (it may be the rejected side), which guards the
loop against drifting to ever shorter, finally empty answers.
"""
from __future__ import annotations

from dataclasses import dataclass

from selfimprove.storage.db import Store
from selfimprove.storage.records import Evaluation, Pair, PairDrop
from selfimprove.tasks.results import BuildResult


@dataclass(frozen=True)
class Ranked:
    """A candidate as pair selection sees it: its text and its combined self-reward."""
    generation_id: str
    sample_index: int
    text: str
    score: float | None  # the combined reward; None when a weighted signal is missing (unparsed judge)
    answered: bool = True  # has an extracted answer and non-empty text (see has_answer)


def has_answer(text: str | None, extracted_answer: str | None) -> bool:
    """May this response be a chosen side under `pairs.chosen_must_answer`? (answers.grade extracted
    an answer from its format, label-free, and the text is not blank)."""
    return extracted_answer is not None and bool(text and text.strip())


def best_of(candidates: list[Ranked], must_answer: bool = True) -> Ranked | None:
    """The highest-scored candidate that may be chosen (answered, when must_answer); ties go to the
    lowest sample index. None when there is none."""
    eligible = [c for c in candidates if c.score is not None and (c.answered or not must_answer)]
    return max(eligible, key=lambda c: (c.score, -c.sample_index), default=None)


def select_pair(candidates: list[Ranked], min_margin: float,
                must_answer: bool = True) -> tuple[Ranked, Ranked] | str:
    """(chosen, rejected) or the reason no pair is made: chosen = the best-scored candidate (with
    must_answer: the best answered one), rejected = the worst-scored of all. Ties on the best (worst)
    score go to the lowest (highest) sample index, so the choice is deterministic.

    >>> c = [Ranked("a", 0, "1", 4.0), Ranked("b", 1, "2", 1.0), Ranked("c", 2, "3", 1.0)]
    >>> chosen, rejected = select_pair(c, 0.5)
    >>> (chosen.generation_id, rejected.generation_id)
    ('a', 'c')
    >>> select_pair(c, 5.0)
    'margin_below_min'
    >>> silent = [Ranked("e", 0, "", 5.0, answered=False)]  # top-scored but empty: never chosen
    >>> [r.generation_id for r in select_pair(silent + c, 0.5)]
    ['a', 'c']
    >>> select_pair(silent + [Ranked("f", 1, "no idea", 1.0, answered=False)], 0.5)
    'no_answered_candidate'
    """
    scored = [c for c in candidates if c.score is not None]
    if len(scored) < 2:
        return "fewer_than_two_scored"
    worst = min(scored, key=lambda c: (c.score, -c.sample_index))
    if max(c.score for c in scored) == worst.score:
        return "all_tied"
    best = best_of(scored, must_answer)
    if best is None:
        return "no_answered_candidate"
    if best.score == worst.score:  # the answered candidates all share the lowest score
        return "answered_not_above_worst"
    if best.score - worst.score < min_margin:
        return "margin_below_min"
    if best.text.strip() == worst.text.strip():
        return "identical_text"
    return best, worst


def scored_candidates(store: Store, run_id: str, iteration: int, purpose: str) -> dict[str, list[Ranked]]:
    """prompt_id -> candidates of one source, each with its combined reward (signal "reward")."""
    by_prompt: dict[str, list[Ranked]] = {}
    for c in store.candidates(run_id, iteration, [purpose]):
        by_prompt.setdefault(c.prompt_id, []).append(Ranked(c.generation_id, c.sample_index, c.text, c.reward,
                                                            has_answer(c.text, c.extracted_answer)))
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
        result = select_pair(candidates, cfg.pairs.min_margin, cfg.pairs.chosen_must_answer)
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
    stats = pair_statistics(store, run_id, iteration, pairs)
    return BuildResult(pairs=len(pairs), prompts=len(pairs) + len(drops), dropped=len(drops),
                       drop_reasons=dict(sorted(reasons.items())),
                       mean_margin=sum(p.margin for p in pairs) / len(pairs) if pairs else None,
                       chosen_correct_rate=_rate([correct[p.chosen_generation_id] for p in labelled]),
                       rejected_correct_rate=_rate([correct[p.rejected_generation_id] for p in labelled]), **stats)


PAIR_STATISTICS = ("chosen_tokens", "rejected_tokens", "chosen_answer_rate", "rejected_answer_rate")


def pair_statistics(store: Store, run_id: str, iteration: int, pairs: list[Pair]) -> dict[str, float | None]:
    """Mean response tokens and the share with an extracted answer, of each side of the pairs (the
    early signs of length collapse); also stored as evaluations rows of split "pairs" (no model hash:
    they describe training data). None (and no row) without pairs."""
    shape = store.length_and_answer(run_id, iteration)
    sides = {"chosen": [shape[p.chosen_generation_id] for p in pairs],
             "rejected": [shape[p.rejected_generation_id] for p in pairs]}
    stats: dict[str, float | None] = {}
    for side, rows in sides.items():
        tokens = [n for n, _ in rows if n is not None]
        stats[f"{side}_tokens"] = sum(tokens) / len(tokens) if tokens else None
        stats[f"{side}_answer_rate"] = _rate([answered for _, answered in rows])
    store.add([Evaluation(run_id, iteration, "pairs", name, float(stats[name]), None)
               for name in PAIR_STATISTICS if stats[name] is not None])
    return stats


def _rate(flags: list[bool]) -> float | None:
    return sum(bool(f) for f in flags) / len(flags) if flags else None
