"""Reward stage: every configured self-reward signal for every candidate, and their weighted sum.

Signals are computed per group (the candidates of one prompt from one source), stored per
generation in `rewards` (one row per signal), and combined into the signal "reward", which is
what pairs, SFT selection and B-STaR's grid rank by. A candidate whose judge score could not be
parsed has no combined reward and is left out of selection rather than counted as zero.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from storage.db import Store, now
from tasks import rewards as sig

CONFIDENCE = {"self_certainty", "entropy", "borda"}  # need a teacher-forced forward pass


def candidate_rows(store: Store, run_id: str, iteration: int, purposes: list[str]) -> list[dict]:
    marks = ", ".join("?" * len(purposes))
    return store.query(
        "SELECT g.*, p.prompt_text, (SELECT avg(j.score) FROM judgments j WHERE j.generation_id = g.generation_id "
        "AND j.parsed) AS judge_score FROM generations g JOIN prompts p USING (run_id, prompt_id) "
        f"WHERE g.run_id = ? AND g.iteration = ? AND g.purpose IN ({marks}) ORDER BY g.generation_id",
        [run_id, iteration, *purposes])


def confidence_stats(cfg, model_dir: str | Path, rows: list[dict]) -> dict[str, tuple[float, float]]:
    """generation_id -> (self_certainty, negative_entropy) from the full next-token distributions."""
    from models.loading import chat_prompt_ids
    from models.scoring import scoring_model

    model, tokenizer = scoring_model(model_dir, "float32")
    prompts = [chat_prompt_ids(tokenizer, r["prompt_text"]) for r in rows]
    stats = sig.completion_logits_stats(model, prompts, [list(r["token_ids"]) for r in rows], tokenizer.pad_token_id)
    return {r["generation_id"]: s for r, s in zip(rows, stats)}


def group_signals(names: set[str], group: list[dict], confidence: dict) -> dict[str, list[float | None]]:
    """Each named signal for one group of candidates (same prompt, same source), in group order."""
    answers = [r["extracted_answer"] for r in group]
    out: dict[str, list[float | None]] = {}
    if "judge" in names:
        out["judge"] = [r["judge_score"] for r in group]
    if "verifiable" in names:
        out["verifiable"] = sig.verifiable([r["correct"] for r in group])
    if "majority_vote" in names:
        out["majority_vote"] = sig.majority_vote(answers)
    if names & CONFIDENCE:
        certainty = [confidence[r["generation_id"]][0] for r in group]
        if "self_certainty" in names:
            out["self_certainty"] = certainty
        if "entropy" in names:
            out["entropy"] = [confidence[r["generation_id"]][1] for r in group]
        if "borda" in names:
            out["borda"] = sig.borda_vote(answers, certainty)
    return out


def combined(values: dict[str, list[float | None]], weights: dict[str, float]) -> list[float | None]:
    """Weighted sum per candidate; None where any weighted signal is missing (an unparsed judge)."""
    size = len(next(iter(values.values())))
    return [None if any(values[n][i] is None for n in weights)
            else sum(w * values[n][i] for n, w in weights.items()) for i in range(size)]


def score_candidates(store: Store, cfg, run_id: str, iteration: int, model_dir: str | Path,
                     purposes: list[str]) -> dict:
    weights = {s.name: s.weight for s in cfg.reward.signals}
    rows = candidate_rows(store, run_id, iteration, purposes)
    confidence = confidence_stats(cfg, model_dir, rows) if set(weights) & CONFIDENCE else {}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["prompt_id"], r["purpose"])].append(r)
    records, rewards = [], []
    for group in groups.values():
        values = group_signals(set(weights), group, confidence)
        values["reward"] = combined(values, weights)
        for name, column in values.items():
            records += [{"run_id": run_id, "iteration": iteration, "generation_id": r["generation_id"],
                         "signal": name, "value": v, "created_at": now()} for r, v in zip(group, column)]
        rewards += [v for v in values["reward"] if v is not None]
    store.append("rewards", records)
    return {"candidates": len(rows), "scored": len(rewards), "signals": ",".join(sorted(weights)),
            "reward_mean": sum(rewards) / len(rewards) if rewards else None}
