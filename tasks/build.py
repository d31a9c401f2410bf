"""Stage 3: Self-Rewarding preference pairs: per prompt, highest vs lowest mean judge score.

A prompt gives no pair when fewer than two candidates have a score, when all scores tie, when
the margin is below `pairs.min_margin`, or when the best and worst texts are identical; each
dropped prompt is recorded with its reason.
"""
from __future__ import annotations

from dataclasses import dataclass

from storage.db import Store, now


@dataclass(frozen=True)
class Candidate:
    generation_id: str
    sample_index: int
    text: str
    score: float | None  # mean of the parsed judgments; None when none parsed


def select_pair(candidates: list[Candidate], min_margin: float) -> tuple[Candidate, Candidate] | str:
    """(chosen, rejected) or the reason no pair is made. Ties on the best (worst) score go to the
    lowest (highest) sample index, so the choice is deterministic.

    >>> c = [Candidate("a", 0, "1", 4.0), Candidate("b", 1, "2", 1.0), Candidate("c", 2, "3", 1.0)]
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


def scored_candidates(store: Store, run_id: str, iteration: int, purpose: str) -> dict[str, list[Candidate]]:
    """prompt_id -> candidates of one source, each with its combined reward (signal "reward")."""
    rows = store.query(
        "SELECT g.prompt_id, g.generation_id, g.sample_index, g.text, r.value AS score FROM generations g "
        "LEFT JOIN rewards r ON r.generation_id = g.generation_id AND r.signal = 'reward' "
        "WHERE g.run_id = ? AND g.iteration = ? AND g.purpose = ? ORDER BY g.prompt_id, g.sample_index",
        [run_id, iteration, purpose])
    by_prompt: dict[str, list[Candidate]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(
            Candidate(r["generation_id"], r["sample_index"], r["text"], r["score"]))
    return by_prompt


def pair_row(run_id: str, iteration: int, prompt_id: str, chosen: Candidate, rejected: Candidate,
             chosen_source: str = "current", rejected_source: str = "current") -> dict:
    return {"pair_id": f"{run_id}:{iteration}:{prompt_id}", "run_id": run_id, "iteration": iteration,
            "prompt_id": prompt_id, "chosen_generation_id": chosen.generation_id,
            "rejected_generation_id": rejected.generation_id, "chosen_score": chosen.score,
            "rejected_score": rejected.score, "margin": chosen.score - rejected.score, "created_at": now(),
            "chosen_source": chosen_source, "rejected_source": rejected_source}


def build_pairs(store: Store, cfg, run_id: str, iteration: int) -> dict:
    """Self-Rewarding: best vs worst of the current model's candidates, by combined reward."""
    pairs, drops = [], []
    for prompt_id, candidates in scored_candidates(store, run_id, iteration, "train").items():
        result = select_pair(candidates, cfg.pairs.min_margin)
        if isinstance(result, str):
            drops.append({"run_id": run_id, "iteration": iteration, "prompt_id": prompt_id, "reason": result})
        else:
            pairs.append(pair_row(run_id, iteration, prompt_id, *result))
    return save_pairs(store, run_id, iteration, pairs, drops)


def save_pairs(store: Store, run_id: str, iteration: int, pairs: list[dict], drops: list[dict]) -> dict:
    store.append("pairs", pairs)
    store.append("pair_drops", drops)
    correct = {r["generation_id"]: r["correct"] for r in store.query(
        "SELECT generation_id, correct FROM generations WHERE run_id = ? AND iteration = ?", [run_id, iteration])}
    reasons: dict[str, int] = {}
    for d in drops:
        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
    # With a verifiable answer: how often the self-reward put a right answer over a wrong one.
    labelled = [p for p in pairs if correct[p["chosen_generation_id"]] is not None]
    return {"pairs": len(pairs), "prompts": len(pairs) + len(drops), "dropped": len(drops),
            **{f"dropped_{k}": v for k, v in sorted(reasons.items())},
            "mean_margin": sum(p["margin"] for p in pairs) / len(pairs) if pairs else None,
            "chosen_correct_rate": _rate([correct[p["chosen_generation_id"]] for p in labelled]),
            "rejected_correct_rate": _rate([correct[p["rejected_generation_id"]] for p in labelled])}


def _rate(flags: list[bool]) -> float | None:
    return sum(bool(f) for f in flags) / len(flags) if flags else None
