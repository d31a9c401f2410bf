"""Stage 2: the current model judges its own candidates; k judgments per candidate.

Two modes (config `judge.mode`):
- text: the model writes a rationale and a final "Score: N" line (sampled k times); a judgment
  whose final line does not parse is stored with parsed=false and its raw text, never dropped.
- logprob: the assistant turn is pre-filled with "Score:" and the expected score is read from
  P("0".."5") in one teacher-forced forward pass; deterministic, so one judgment per candidate.
- pairwise: each candidate against each other candidate of its prompt, both orders, P("A") vs
  P("B"); its score is 5 x its mean win probability (tasks/judge_pairwise.py).
Also reports how well the judge agrees with the verifiable answer (AUC), since a self-reward
is only as good as that agreement.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from models.engines import SamplingSpec
from models.loading import chat_prompt_ids, load_tokenizer, model_hash
from models.scoring import next_token_logprobs, scoring_model
from storage.db import Store, now
from tasks.common import chunks, crash_point, engine_for, progress
from tasks.judge_pairwise import judge_groups
from tasks.judge_prompt import SCORE_PREFIX, digit_token_ids, expected_score, judge_prompt, parse_final_score

def judge_candidates(store: Store, cfg, run_id: str, iteration: int, model_dir: str | Path,
                     purposes: tuple[str, ...] = ("train",)) -> dict:
    """Judge every candidate of `purposes` in this iteration with the model in model_dir."""
    jc = cfg.judge
    k = jc.k if jc.mode == "text" else 1
    prompts = {p["prompt_id"]: p for p in store.prompts(run_id, "train")}
    candidates = [c for purpose in purposes for c in store.generations(run_id, iteration, purpose)]
    judged = {r["generation_id"] for r in store.query(
        "SELECT generation_id FROM judgments WHERE run_id = ? AND iteration = ? GROUP BY generation_id "
        "HAVING count(*) >= ?", [run_id, iteration, k])}
    todo = [c for c in candidates if c["generation_id"] not in judged]
    if jc.mode == "pairwise":
        # A score depends on the prompt's other candidates: whole groups are judged and written
        # together (a chunk is whole groups), so a resumed stage never mixes two tournaments.
        unfinished = {c["prompt_id"] for c in todo}
        todo = [c for c in candidates if c["prompt_id"] in unfinished]
    model, tokenizer = scoring_model(model_dir, cfg.model.dtype) if jc.mode != "text" else (None, load_tokenizer(model_dir))
    digest = model_hash(model_dir)
    started = time.perf_counter()
    for n, batch in enumerate(_chunks(todo, cfg.engine.write_every, whole_prompts=jc.mode == "pairwise"), start=1):
        texts = [judge_prompt(prompts[c["prompt_id"]]["question"], c["text"]) for c in batch] \
            if jc.mode != "pairwise" else []
        if jc.mode == "logprob":
            scored = judge_logprob(model, tokenizer, texts)
        elif jc.mode == "pairwise":
            scored = _judge_pairwise(model, tokenizer, prompts, batch)
        else:
            scored = _judge_text(cfg, model_dir, tokenizer, texts, k, iteration * 104729 + n)
        rows = [{"judgment_id": f"{c['generation_id']}:j{j}", "run_id": run_id, "iteration": iteration,
                 "generation_id": c["generation_id"], "judge_index": j, "mode": jc.mode, "judge_model_hash": digest,
                 "raw_text": raw, "score": score, "parsed": score is not None, "created_at": now()}
                for c, per_candidate in zip(batch, scored) for j, (raw, score) in enumerate(per_candidate)]
        store.append("judgments", rows)
        progress("judge", iteration, min(n * cfg.engine.write_every, len(todo)), len(todo), started)
        crash_point("judge", iteration)
    stats = judge_statistics(store, run_id, iteration)
    store.append("evaluations", [
        {"run_id": run_id, "iteration": iteration, "split": "train", "metric": f"judge_{name}", "value": float(value),
         "model_hash": digest, "created_at": now()}
        for name, value in stats.items() if isinstance(value, (int, float)) and value is not None])
    return stats


def _by_prompt(candidates: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for c in candidates:
        groups.setdefault(c["prompt_id"], []).append(c)
    return groups


def _chunks(candidates: list[dict], size: int, whole_prompts: bool):
    if not whole_prompts:
        yield from chunks(candidates, size)
        return
    by_prompt = _by_prompt(candidates)
    if not by_prompt:  # everything judged already (a resumed stage)
        return
    for groups in chunks(list(by_prompt.values()), max(1, size // max(len(g) for g in by_prompt.values()))):
        yield [c for group in groups for c in group]


def _judge_pairwise(model, tokenizer, prompts: dict, batch: list[dict]) -> list[list[tuple[str, float | None]]]:
    """Per candidate of batch (whole prompt groups, in order), its pairwise tournament judgment."""
    groups = _by_prompt(batch)
    judged = judge_groups(model, tokenizer, [(prompts[pid]["question"], [c["text"] for c in members])
                                             for pid, members in groups.items()])
    by_id = {c["generation_id"]: [verdict] for members, verdicts in zip(groups.values(), judged)
             for c, verdict in zip(members, verdicts)}
    return [by_id[c["generation_id"]] for c in batch]


def judge_logprob(model, tokenizer, texts: list[str]) -> list[list[tuple[str, float]]]:
    ids = [chat_prompt_ids(tokenizer, t, assistant_prefix=SCORE_PREFIX) for t in texts]
    digits = digit_token_ids(tokenizer)
    rows = next_token_logprobs(model, ids, tokenizer.pad_token_id)
    out = []
    for row in rows:
        score, mass = expected_score(row, digits)
        out.append([(json.dumps({"expected_score": score, "digit_mass": mass}), score if mass > 0 else None)])
    return out


def _judge_text(cfg, model_dir, tokenizer, texts, k, seed) -> list[list[tuple[str, float | None]]]:
    engine = engine_for(cfg, model_dir)
    spec = SamplingSpec(n=k, temperature=cfg.judge.temperature, top_p=1.0, max_tokens=cfg.judge.max_tokens, seed=seed)
    outputs = engine.generate([chat_prompt_ids(tokenizer, t) for t in texts], spec)
    return [[(s.text, parse_final_score(s.text)) for s in samples] for samples in outputs]


def judge_statistics(store: Store, run_id: str, iteration: int) -> dict:
    rows = store.query(
        "SELECT g.generation_id, g.correct, avg(j.score) AS score, count(*) AS judgments, "
        "sum(CASE WHEN j.parsed THEN 0 ELSE 1 END) AS unparsed FROM judgments j "
        "JOIN generations g USING (generation_id) WHERE j.run_id = ? AND j.iteration = ? "
        "GROUP BY g.generation_id, g.correct", [run_id, iteration])
    total = sum(r["judgments"] for r in rows)
    scores = [r["score"] for r in rows if r["score"] is not None]
    labelled = [(r["score"], r["correct"]) for r in rows if r["score"] is not None and r["correct"] is not None]
    return {"judgments": total, "candidates": len(rows),
            "parse_failure_rate": sum(r["unparsed"] for r in rows) / max(total, 1),
            "score_mean": sum(scores) / len(scores) if scores else None,
            "score_std": _std(scores), "auc": auc(labelled)}


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
