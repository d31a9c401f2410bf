"""The judge probe and the judge-quality guard.

A self-reward is only as good as the judge's agreement with the truth, and training the policy can
erode the judge. The probe measures that agreement on the same answers every iteration: the seed
model samples `generate.n` answers to each of `judge.probe_size` labelled prompts once (purpose
probe_sample, iteration 0; the probe split never overlaps train, held-out or the bootstrap's seed
split), and each judge model scores those fixed answers. Its AUC against the verifier is stored
per iteration (evaluations: split "probe", metric "judge_auc"); labels are read only here, to
measure, never to train.

The guard: before an iteration trains on self-judgments, a probe AUC under `judge.min_probe_auc`
warns or stops the run (`judge.on_low_auc`).
"""
from __future__ import annotations

from pathlib import Path

from selfimprove.models.engines import SamplingSpec
from selfimprove.models.loading import load_tokenizer, model_hash
from selfimprove.storage.db import Store
from selfimprove.storage.records import Evaluation, Judgment
from selfimprove.tasks.common import log
from selfimprove.tasks.generate import generate_samples
from selfimprove.tasks.judge import auc, judge_batch, judge_chunks, judge_scorer, pair_accuracy
from selfimprove.tasks.results import JudgeProbeResult
from selfimprove.tasks.stats import auc_interval

PROBE = "probe_sample"
MIN_PER_CLASS = 10  # right and wrong probe answers needed for an AUC


class JudgeQualityError(RuntimeError):
    """The judge is too close to chance to train on (judge.min_probe_auc with on_low_auc: stop)."""


def probe_answers(store: Store, cfg, run_id: str) -> None:
    """The seed model's fixed answers to the probe prompts (generated once, resumable)."""
    seed_dir = store.iteration(run_id, 0).model_path
    g = cfg.generate
    spec = SamplingSpec(g.n, g.temperature, g.top_p, g.max_tokens, cfg.seed)
    generate_samples(store, cfg, run_id, 0, seed_dir, store.prompts(run_id, "probe"), spec, PROBE)


def probes_judge(cfg) -> bool:
    """The probe runs when it is sized and the judge enters the reward (a majority-vote or verifiable reward
    never reads the judge, so its AUC would cost time and inform nothing)."""
    return bool(cfg.judge.probe_size) and cfg.reward.uses_judge


def judge_probe(store: Store, cfg, run_id: str, iteration: int, model_dir: str | Path,
                guard: bool = True) -> JudgeProbeResult:
    """Score the probe answers with the judge in model_dir (once per model: judgments are kept by the
    judge's hash), store the AUC for `iteration`, and apply the guard when `guard`."""
    probe_answers(store, cfg, run_id)
    digest = model_hash(model_dir)
    done = {r.generation_id for r in store.probe_judgments(run_id, digest)}
    todo = [c for c in store.candidates(run_id, 0, [PROBE]) if c.generation_id not in done]
    if cfg.judge.mode == "pairwise":  # a tournament needs its whole group
        unfinished = {c.prompt_id for c in todo}
        todo = [c for c in store.candidates(run_id, 0, [PROBE]) if c.prompt_id in unfinished]
    if todo:
        tokenizer = load_tokenizer(model_dir)
        scorer = judge_scorer(cfg, model_dir) if cfg.judge.mode != "text" else None
        for batch in judge_chunks(todo, cfg):
            scored = judge_batch(cfg, model_dir, tokenizer, scorer, batch, iteration)
            store.add([Judgment(f"{c.generation_id}:probe-{digest[:16]}:j{j}", run_id, iteration, c.generation_id, j,
                                cfg.judge.mode, digest, raw, score, score is not None)
                       for c, per_candidate in zip(batch, scored) for j, (raw, score) in enumerate(per_candidate)])
    rows = store.probe_judgments(run_id, digest)
    labelled = [(r.score, r.correct) for r in rows if r.score is not None and r.correct is not None]
    right = sum(ok for _, ok in labelled)
    # An AUC over one or two right answers is noise (a random judge can score 1.0): none is reported.
    value = auc(labelled) if min(right, len(labelled) - right) >= MIN_PER_CLASS else None
    low, high = auc_interval(value, right, len(labelled) - right) if value is not None else (None, None)
    within, pairs = pair_accuracy(rows)
    if value is not None:
        store.add([Evaluation(run_id, iteration, "probe", metric, v, digest)
                   for metric, v in (("judge_auc", value), ("judge_auc_low", low), ("judge_auc_high", high),
                                     ("judge_pair_accuracy", within), ("judge_pair_count", pairs))
                   if v is not None])
    result = JudgeProbeResult(auc=value, auc_low=low, auc_high=high, pair_accuracy=within, pair_count=pairs,
                              candidates=len(rows),
                              right=sum(bool(r.correct) for r in rows), judge_model_hash=digest)
    if guard:
        result.below_floor = check_judge_quality(cfg, iteration, value)
    return result


def probe_auc_interval(store: Store, run_id: str, value: float | None) -> tuple[float | None, float | None]:
    """The 95% interval of a probe AUC of this run (for tables over runs stored before judge_probe kept it)."""
    labels = [c.correct for c in store.candidates(run_id, 0, [PROBE]) if c.correct is not None]
    right = sum(labels)
    if value is None or right in (0, len(labels)):  # an AUC needs both kinds of answer
        return None, None
    return auc_interval(value, right, len(labels) - right)


def check_judge_quality(cfg, iteration: int, value: float | None) -> bool:
    """True (and a warning) when the probe AUC is under the floor; JudgeQualityError when told to stop."""
    floor = cfg.judge.min_probe_auc
    if floor is None or (value is not None and value >= floor):
        return False
    shown = (f"undefined (fewer than {MIN_PER_CLASS} right or wrong probe answers; raise judge.probe_size)"
             if value is None else f"{value:.3f}")
    message = (f"iteration {iteration}: the judge's AUC on the probe is {shown}, under judge.min_probe_auc "
               f"{floor}: its self-judgments are close to chance. Teach it first (bootstrap.enabled: true), "
               "use a verifiable or majority-vote reward, or lower the floor.")
    if cfg.judge.on_low_auc == "stop":
        raise JudgeQualityError(message + " (judge.on_low_auc: stop)")
    log.warning("%s Going on (judge.on_low_auc: warn).", message)
    return True
