"""Reward scoring: every configured self-reward signal for every candidate, and their weighted sum.

The one implementation, used offline (the score stage, after judging) and online (GRPO's reward
function, tasks/grpo.py). Signals are computed per group (the candidates of one prompt from one
source), stored per generation in `rewards` (one row per signal), and combined into the signal
"reward", which pairs, SFT selection, B-STaR's grid and GRPO's advantages rank by. A candidate
whose judge score could not be parsed has no combined reward (None): it is left out of selection
offline, and GRPO gives it no advantage (TRL treats None as unscorable), never counted as zero.
Model-based signals come from one teacher-forced pass of the scoring model (models/scoring.py).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from selfimprove.storage.db import Store
from selfimprove.storage.records import Candidate, Reward
from selfimprove.tasks import rewards as sig
from selfimprove.tasks.results import ScoreResult

CONFIDENCE = {"self_certainty", "entropy", "borda"}  # need a teacher-forced forward pass


def confidence_stats(model_dir: str | Path, candidates: list[Candidate],
                     device: str = "auto") -> dict[str, tuple[float, float]]:
    """generation_id -> (self_certainty, negative_entropy) from the full next-token distributions,
    computed by the scoring model on `device` (model.device)."""
    from selfimprove.models.loading import chat_prompt_ids
    from selfimprove.models.scoring import scoring_model

    model, tokenizer = scoring_model(model_dir, device)
    prompts = [chat_prompt_ids(tokenizer, c.prompt_text) for c in candidates]
    stats = sig.completion_logits_stats(model, prompts, [list(c.token_ids) for c in candidates],
                                        tokenizer.pad_token_id)
    return {c.generation_id: s for c, s in zip(candidates, stats)}


def group_signals(names: set[str], group: list[Candidate], confidence: dict) -> dict[str, list[float | None]]:
    """Each named signal for one group of candidates (same prompt, same source), in group order."""
    answers = [c.extracted_answer for c in group]
    out: dict[str, list[float | None]] = {}
    if "judge" in names:
        out["judge"] = [c.judge_score for c in group]
    if "verifiable" in names:
        out["verifiable"] = sig.verifiable([c.correct for c in group])
    if "majority_vote" in names:
        out["majority_vote"] = sig.majority_vote(answers)
    if names & CONFIDENCE:
        certainty = [confidence[c.generation_id][0] for c in group]
        if "self_certainty" in names:
            out["self_certainty"] = certainty
        if "entropy" in names:
            out["entropy"] = [confidence[c.generation_id][1] for c in group]
        if "borda" in names:
            out["borda"] = sig.borda_vote(answers, certainty)
    return out


def combined(values: dict[str, list[float | None]], weights: dict[str, float]) -> list[float | None]:
    """Weighted sum per candidate; None where any weighted signal is missing (an unparsed judge).

    >>> combined({"judge": [4.0, None], "majority_vote": [1.0, 0.0]}, {"judge": 1.0, "majority_vote": 0.5})
    [4.5, None]
    """
    size = len(next(iter(values.values())))
    return [None if any(values[n][i] is None for n in weights)
            else sum(w * values[n][i] for n, w in weights.items()) for i in range(size)]


def reward_records(run_id: str, iteration: int, candidates: list[Candidate], weights: dict[str, float],
                   confidence: dict) -> tuple[list[Reward], dict[str, float | None]]:
    """Every signal of every candidate, grouped by (prompt, purpose), as `rewards` rows; and each
    candidate's combined reward by generation id."""
    groups: dict[tuple, list[Candidate]] = defaultdict(list)
    for c in candidates:
        groups[(c.prompt_id, c.purpose)].append(c)
    records: list[Reward] = []
    combined_by_id: dict[str, float | None] = {}
    for group in groups.values():
        values = group_signals(set(weights), group, confidence)
        values["reward"] = combined(values, weights)
        for name, column in values.items():
            records += [Reward(run_id, iteration, c.generation_id, name, v) for c, v in zip(group, column)]
        combined_by_id.update((c.generation_id, v) for c, v in zip(group, values["reward"]))
    return records, combined_by_id


def score_candidates(store: Store, cfg, run_id: str, iteration: int, model_dir: str | Path,
                     purposes: list[str]) -> ScoreResult:
    """The score stage: rewards for this iteration's candidates of `purposes` (judged already)."""
    weights = {s.name: s.weight for s in cfg.reward.signals}
    candidates = store.candidates(run_id, iteration, purposes)
    confidence = confidence_stats(model_dir, candidates, cfg.model.device) if set(weights) & CONFIDENCE else {}
    records, rewards = reward_records(run_id, iteration, candidates, weights, confidence)
    store.add(records)
    scored = [v for v in rewards.values() if v is not None]
    return ScoreResult(candidates=len(candidates), scored=len(scored), signals=",".join(sorted(weights)),
                       reward_mean=sum(scored) / len(scored) if scored else None)
