"""Stage 2: the current model judges its own candidates; k judgments per candidate.

Two modes (config `judge.mode`):
- text: the model writes a rationale and a final "Score: N" line (sampled k times); a judgment
  whose final line does not parse is stored with parsed=false and its raw text, never dropped.
- logprob: the assistant turn is pre-filled with "Score:" and the expected score is read from
  P("0".."5") in one teacher-forced forward pass; deterministic, so one judgment per candidate.
- pairwise: each candidate against each other candidate of its prompt, both orders, P("A") vs
  P("B"); its score is 5 x its mean win probability (tasks/judge_pairwise.py).
- verify: a short yes/no question about the answer; score 5 x P(yes) / (P(yes) + P(no)), one
  teacher-forced pass like logprob.
Also reports how well the judge agrees with the verifiable answer (AUC), since a self-reward
is only as good as that agreement.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from selfimprove.models.engines import SamplingSpec
from selfimprove.models.loading import chat_prompt_ids, load_tokenizer, model_hash
from selfimprove.models.scoring import transformers_scorer
from selfimprove.storage.db import Store
from selfimprove.storage.records import Candidate, Evaluation, JudgedCandidate, Judgment
from selfimprove.tasks.common import chunks, content_seed, crash_point, engine_for, progress
from selfimprove.tasks.judge_pairwise import judge_groups
from selfimprove.tasks.judge_prompt import (
    SCORE_PREFIX,
    digit_token_ids,
    expected_score,
    judge_prompt,
    parse_final_score,
    verdict_token_ids,
)
from selfimprove.tasks.results import JudgeResult


def judge_candidates(store: Store, cfg, run_id: str, iteration: int, model_dir: str | Path,
                     purposes: tuple[str, ...] = ("train",)) -> JudgeResult:
    """Judge every candidate of `purposes` in this iteration with the model in model_dir."""
    jc = cfg.judge
    k = jc.k if jc.mode == "text" else 1
    candidates = store.candidates(run_id, iteration, purposes)
    judged = store.judged_generation_ids(run_id, iteration, k)
    todo = [c for c in candidates if c.generation_id not in judged]
    if jc.mode == "pairwise":
        # A score depends on the prompt's other candidates: whole groups are judged and written
        # together (a chunk is whole groups), so a resumed stage never mixes two tournaments.
        unfinished = {c.prompt_id for c in todo}
        todo = [c for c in candidates if c.prompt_id in unfinished]
    tokenizer = load_tokenizer(model_dir)
    scorer = judge_scorer(cfg, model_dir) if jc.mode != "text" else None
    digest = model_hash(model_dir)
    started = time.perf_counter()
    for n, batch in enumerate(judge_chunks(todo, cfg), start=1):
        scored = judge_batch(cfg, model_dir, tokenizer, scorer, batch, iteration)
        store.add([Judgment(f"{c.generation_id}:j{j}", run_id, iteration, c.generation_id, j, jc.mode, digest, raw,
                            score, score is not None)
                   for c, per_candidate in zip(batch, scored) for j, (raw, score) in enumerate(per_candidate)])
        progress("judge", iteration, min(n * cfg.engine.write_every, len(todo)), len(todo), started)
        crash_point("judge", iteration)
    result = judge_statistics(store, run_id, iteration)
    store.add([Evaluation(run_id, iteration, "train", f"judge_{name}", value, digest)
               for name, value in result.metrics().items() if name not in ("seconds", "skipped")])
    return result


def judge_batch(cfg, model_dir, tokenizer, scorer, batch: list[Candidate],
                iteration: int) -> list[list[tuple[str, float | None]]]:
    """Per candidate, its judgments [(raw, score or None)] in judge.mode (pairwise: whole prompt groups)."""
    mode = cfg.judge.mode
    if mode in POINTWISE:
        return judge_logprob(scorer, tokenizer, [judge_prompt(c.question, c.text, mode) for c in batch], mode)
    if mode == "pairwise":
        return _judge_pairwise(scorer, tokenizer, batch)
    seeds = [content_seed(cfg.seed, iteration, "judge", c.generation_id) for c in batch]
    return _judge_text(cfg, model_dir, tokenizer, [judge_prompt(c.question, c.text) for c in batch], cfg.judge.k, seeds)


def judge_chunks(candidates: list[Candidate], cfg):
    """Chunks of `engine.write_every` candidates to judge and commit together (whole prompts for pairwise)."""
    return _chunks(candidates, cfg.engine.write_every, whole_prompts=cfg.judge.mode == "pairwise")


def _by_prompt(candidates: list[Candidate]) -> dict[str, list[Candidate]]:
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(c.prompt_id, []).append(c)
    return groups


def _chunks(candidates: list[Candidate], size: int, whole_prompts: bool):
    if not whole_prompts:
        yield from chunks(candidates, size)
        return
    by_prompt = _by_prompt(candidates)
    if not by_prompt:  # everything judged already (a resumed stage)
        return
    for groups in chunks(list(by_prompt.values()), max(1, size // max(len(g) for g in by_prompt.values()))):
        yield [c for group in groups for c in group]


def _judge_pairwise(scorer, tokenizer, batch: list[Candidate]) -> list[list[tuple[str, float | None]]]:
    """Per candidate of batch (whole prompt groups, in order), its pairwise tournament judgment."""
    groups = _by_prompt(batch)
    judged = judge_groups(scorer, tokenizer, [(members[0].question, [c.text for c in members])
                                             for members in groups.values()])
    by_id = {c.generation_id: [verdict] for members, verdicts in zip(groups.values(), judged)
             for c, verdict in zip(members, verdicts)}
    return [by_id[c.generation_id] for c in batch]


def judge_scorer(cfg, model_dir: str | Path):
    """next_token_logprobs(prompts, token_ids) for the logprob and pairwise judges (judge.backend)."""
    if cfg.judge.backend == "engine":
        return engine_for(cfg, model_dir).next_token_logprobs
    return transformers_scorer(model_dir, cfg.model.device)


POINTWISE = ("logprob", "verify")  # one teacher-forced pass per candidate, score from next-token probabilities


def judge_logprob(scorer, tokenizer, texts: list[str], mode: str = "logprob") -> list[list[tuple[str, float]]]:
    """Per judge prompt text (judge_prompt(..., mode)), the expected score from `scorer` (judge_scorer):
    over the digits after a pre-filled "Score:" (logprob), or over yes (5) / no (0) (verify)."""
    prefix = SCORE_PREFIX if mode == "logprob" else ""
    ids = [chat_prompt_ids(tokenizer, t, assistant_prefix=prefix) for t in texts]
    digits = digit_token_ids(tokenizer) if mode == "logprob" else verdict_token_ids(tokenizer)
    rows = scorer(ids, sorted({t for options in digits.values() for t in options})) if ids else []
    out = []
    for row in rows:
        score, mass = expected_score(row, digits)
        out.append([(json.dumps({"expected_score": score, "digit_mass": mass}), score if mass > 0 else None)])
    return out


def _judge_text(cfg, model_dir, tokenizer, texts, k, seeds) -> list[list[tuple[str, float | None]]]:
    engine = engine_for(cfg, model_dir)
    spec = SamplingSpec(n=k, temperature=cfg.judge.temperature, top_p=1.0, max_tokens=cfg.judge.max_tokens)
    outputs = engine.generate([chat_prompt_ids(tokenizer, t) for t in texts], spec, seeds)
    return [[(s.text, parse_final_score(s.text)) for s in samples] for samples in outputs]


def judge_statistics(store: Store, run_id: str, iteration: int) -> JudgeResult:
    rows = store.judged_candidates(run_id, iteration)
    total = sum(r.judgments for r in rows)
    scores = [r.score for r in rows if r.score is not None]
    labelled = [(r.score, r.correct) for r in rows if r.score is not None and r.correct is not None]
    within, pairs = pair_accuracy(rows)
    return JudgeResult(judgments=total, candidates=len(rows),
                       parse_failure_rate=sum(r.unparsed for r in rows) / max(total, 1),
                       score_mean=sum(scores) / len(scores) if scores else None, score_std=_std(scores),
                       auc=auc(labelled), pair_accuracy=within, pair_count=pairs)


def _std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def auc(scored: list[tuple[float, bool]]) -> float | None:
    """P(score of a correct answer > score of a wrong one), ties counted half; None if one class is empty.

    >>> auc([(3.0, True), (1.0, False), (2.0, False)])
    1.0
    >>> auc([(1.0, True), (1.0, False)])
    0.5
    """
    pos = [s for s, ok in scored if ok]
    neg = [s for s, ok in scored if not ok]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def pair_accuracy(rows: list[JudgedCandidate]) -> tuple[float | None, int]:
    """Within-prompt accuracy: over every (right, wrong) pair of scored answers to the same prompt, the
    share the judge scores the right one higher (ties half), and the number of such pairs. Preference
    pairs are built within a prompt, so this, not the pooled AUC (which also credits scoring an easy
    prompt's answers above a hard one's), says how often chosen beats rejected for the right reason.

    >>> r = [JudgedCandidate(f"g{i}", p, ok, s, 1, 0) for i, (p, ok, s) in enumerate(
    ...     [("a", True, 5.0), ("a", True, 4.5), ("a", False, 4.8), ("b", False, 1.0), ("b", True, 0.8),
    ...      ("b", False, 0.5), ("c", True, 2.0)])]
    >>> pair_accuracy(r), round(auc([(x.score, x.correct) for x in r]), 3)
    ((0.5, 4), 0.667)
    """
    by_prompt: dict[str, list[JudgedCandidate]] = {}
    for r in rows:
        if r.score is not None and r.correct is not None:
            by_prompt.setdefault(r.prompt_id, []).append(r)
    wins, pairs = 0.0, 0
    for group in by_prompt.values():
        for good in (r for r in group if r.correct):
            for bad in (r for r in group if not r.correct):
                pairs += 1
                wins += 1.0 if good.score > bad.score else 0.5 if good.score == bad.score else 0.0
    return (wins / pairs if pairs else None), pairs
