"""Temporal Self-Rewarding (Wang et al. 2025): decouple chosen and rejected across time.

Anchored Rejection: the initial model M_0 samples too, and the rejected answer is M_0's worst
(the past stays bad, so the gap between chosen and rejected does not collapse as M_i improves).
Future-Guided Chosen: a look-ahead model M_f, trained briefly from M_i on those pairs, samples
again; its best answer replaces the chosen one when M_i's judge scores it higher. M_{i+1} is
then trained from M_i on the final pairs. M_f is kept on disk and its samples are recorded, but
it is not an iteration model (not registered). With `pairs.chosen_must_answer` every chosen side
(M_i's best, M_f's replacement) is a candidate with an extracted answer (tasks/build.py).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from selfimprove.methods.base import Method, StageContext
from selfimprove.models.loading import has_weights, model_hash
from selfimprove.storage.records import PairDrop
from selfimprove.tasks.build import Ranked, best_of, pair_row, save_pairs, scored_candidates, select_pair
from selfimprove.tasks.results import TemporalBuildResult, TemporalGenerateResult
from selfimprove.tasks.train import run_dpo


def anchored_pair(current: list[Ranked], past: list[Ranked], min_margin: float, must_answer: bool = True):
    """(chosen, rejected, rejected_source) or a drop reason. Chosen = M_i's best (answered, with
    must_answer); rejected = M_0's worst when it scores below the chosen, else M_i's own worst (the
    paper's fallback).

    >>> cur = [Ranked("c0", 0, "5", 4.0), Ranked("c1", 1, "6", 2.0)]
    >>> chosen, rejected, source = anchored_pair(cur, [Ranked("p0", 0, "9", 1.0)], 0.1)
    >>> chosen.generation_id, rejected.generation_id, source
    ('c0', 'p0', 'past')
    >>> silent = Ranked("c2", 2, "", 5.0, answered=False)  # top-scored but empty: never chosen
    >>> anchored_pair([silent] + cur, [Ranked("p0", 0, "9", 1.0)], 0.1)[0].generation_id
    'c0'
    """
    scored_past = [c for c in past if c.score is not None]
    best_current = best_of(current, must_answer)
    if best_current is not None and scored_past:
        worst_past = min(scored_past, key=lambda c: (c.score, -c.sample_index))
        if worst_past.score < best_current.score:
            if best_current.score - worst_past.score < min_margin:
                return "margin_below_min"
            if best_current.text.strip() == worst_past.text.strip():
                return "identical_text"
            return best_current, worst_past, "past"
    result = select_pair(current, min_margin, must_answer)  # fallback: M_i's best vs M_i's worst
    return result if isinstance(result, str) else (*result, "current")


def future_guided(chosen: Ranked, future: list[Ranked], must_answer: bool = True) -> tuple[Ranked, bool]:
    """M_f's best candidate (answered, with must_answer) when it scores strictly higher than the
    current chosen, else the chosen.

    >>> chosen = Ranked("c", 0, "5", 3.0)
    >>> future_guided(chosen, [Ranked("f0", 0, "5", 3.0), Ranked("f1", 1, "6", 2.0)])[1]
    False
    >>> future_guided(chosen, [Ranked("f0", 0, "7", 4.5)])[0].generation_id
    'f0'
    >>> future_guided(chosen, [Ranked("f0", 0, "", 4.5, answered=False)])[1]
    False
    """
    best = best_of(future, must_answer)
    if best is None:
        return chosen, False
    return (best, True) if best.score > chosen.score else (chosen, False)


class Temporal(Method):
    name = "temporal"
    candidate_purposes = ("train", "train_past")

    def generate(self, ctx: StageContext) -> TemporalGenerateResult:
        current = ctx.sample(ctx.model_dir, "train", ctx.spec())
        past = ctx.sample(ctx.initial_model_dir, "train_past", ctx.spec())
        return TemporalGenerateResult(**asdict(current), samples_past=past.samples,
                                      mean_tokens_past=past.mean_tokens)

    def build(self, ctx: StageContext) -> TemporalBuildResult:
        store, run_id, it, cfg = ctx.store, ctx.run_id, ctx.iteration, ctx.cfg
        current = scored_candidates(store, run_id, it, "train")
        past = scored_candidates(store, run_id, it, "train_past")
        anchored, drops = {}, []
        for prompt_id, candidates in current.items():
            result = anchored_pair(candidates, past.get(prompt_id, []), cfg.pairs.min_margin,
                                   cfg.pairs.chosen_must_answer)
            if isinstance(result, str):
                drops.append(PairDrop(run_id, it, prompt_id, result))
            else:
                anchored[prompt_id] = result
        lookahead = self._lookahead(ctx, anchored)
        future = scored_candidates(store, run_id, it, "train_future") if lookahead is not None else {}
        pairs, replaced = [], 0
        for prompt_id, (chosen, rejected, rejected_source) in anchored.items():
            final, improved = future_guided(chosen, future.get(prompt_id, []), cfg.pairs.chosen_must_answer)
            replaced += improved
            pairs.append(pair_row(run_id, it, prompt_id, final, rejected, "future" if improved else "current",
                                  rejected_source))
        built = save_pairs(store, run_id, it, pairs, drops)
        return TemporalBuildResult(**asdict(built), rejected_from_past=sum(p.rejected_source == "past" for p in pairs),
                                   chosen_from_future=replaced, **(lookahead or {}))

    def _lookahead(self, ctx: StageContext, anchored: dict) -> dict | None:
        """Train M_f on the anchored pairs, sample it, judge and score with M_i."""
        if not anchored:
            return None
        prompts = {p.prompt_id: p for p in ctx.store.prompts(ctx.run_id, "train")}
        m_f = Path(ctx.next_model_dir).with_name("lookahead")
        stats = {}
        if not has_weights(m_f):  # resumed builds reuse a look-ahead model that finished saving
            examples = [{"prompt_text": prompts[pid].prompt_text, "chosen_text": c.text, "rejected_text": r.text}
                        for pid, (c, r, _) in anchored.items()]
            stats = run_dpo(ctx.cfg, ctx.model_dir, m_f, examples, epochs=ctx.cfg.method.lookahead_epochs)
        ctx.sample(m_f, "train_future", ctx.spec(), [prompts[pid] for pid in anchored])
        ctx.judge(("train_future",))
        ctx.score(("train_future",))
        return {"lookahead_model_hash": model_hash(m_f), "lookahead_loss": stats.get("loss"),
                "lookahead_steps": stats.get("steps")}
