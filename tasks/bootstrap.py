"""The judge bootstrap: teach the seed model to judge, from verifiable data, before iteration 1.

The Self-Rewarding paper's seed model is fine-tuned on evaluation data (judgments) together with
instruction data. Here both come from the seed model itself on a labelled `seed` split that never
overlaps train, held-out or the probe (tasks/data.py checks):
- judge examples: the seed model's sampled answers to `bootstrap.judge_prompts` seed prompts,
  labelled by the verifier, balanced right/wrong, written in judge.mode's format (the user turn
  asks about the answer, the completion is the right verdict);
- generation examples: its greedy answers to `bootstrap.generation_prompts` other seed prompts.
  They carry no label information; they keep the generator's format (taught judge data alone,
  the model answers arithmetic with "no": STACK.md), but not its arithmetic: trained on its own
  mostly wrong sums, it shifts which sums it gets right (README "Efficacy"). With
  `bootstrap.generation_answers: right` they are instead the answers the verifier marks right, one
  per seed prompt (the greedy one when right, else a right sample): rejection-sampled instruction
  data, the part of the paper's seed training that is human-written there. It reads seed labels.
The model is fine-tuned on both (SFT), the judge's probe AUC and the generator's held-out greedy
accuracy are measured before and after, and the loop after it uses no labels.
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from selfimprove.models.engines import SamplingSpec
from selfimprove.models.loading import model_hash
from selfimprove.storage.db import Store
from selfimprove.storage.records import BootstrapExample, Candidate, Evaluation
from selfimprove.tasks.common import log, run_dir
from selfimprove.tasks.compare import BOOTSTRAPPED, SEED, greedy_difference
from selfimprove.tasks.generate import generate_samples
from selfimprove.tasks.judge_pairwise import PREFIX as PAIRWISE_PREFIX
from selfimprove.tasks.judge_pairwise import compare_prompt
from selfimprove.tasks.judge_probe import judge_probe
from selfimprove.tasks.judge_prompt import SCORE_PREFIX, judge_prompt
from selfimprove.tasks.results import BootstrapResult, from_json
from selfimprove.tasks.train import run_sft

# The verdict a judge example teaches, per judge.mode: (for a right answer, for a wrong one).
VERDICTS = {
    "verify": ("yes", "no"),
    "logprob": (f"{SCORE_PREFIX} 5", f"{SCORE_PREFIX} 1"),
    "text": (f"The response answers the question correctly.\n{SCORE_PREFIX} 5",
             f"The response's answer is wrong.\n{SCORE_PREFIX} 1"),
}


def judge_examples(run_id: str, mode: str, samples: list[Candidate], limit: int, seed: int) -> list[BootstrapExample]:
    """Balanced judge examples from labelled samples: as many right as wrong (at most limit // 2 each),
    duplicates of a prompt's answer counted once. Pairwise: a right and a wrong answer to one prompt,
    in a random order, the right one's letter as the verdict.

    >>> c = [Candidate(f"g{i}", f"p{i // 2}", "s", i % 2, f"t{i}", [], "1", i % 3 == 0, "", f"q{i // 2}")
    ...      for i in range(8)]
    >>> [e.label for e in judge_examples("r", "verify", c, 10, 0)].count(True)  # 3 right, 5 wrong: 3 + 3
    3
    """
    rng = random.Random(seed)
    first: dict[tuple[str, str], Candidate] = {}
    for c in samples:
        if c.correct is not None:
            first.setdefault((c.prompt_id, c.text.strip()), c)
    unique = list(first.values())
    if mode == "pairwise":
        return _pairwise_examples(run_id, unique, limit, rng)
    right = [c for c in unique if c.correct]
    wrong = [c for c in unique if not c.correct]
    rng.shuffle(right)
    rng.shuffle(wrong)
    take = min(len(right), len(wrong), limit // 2)
    chosen = right[:take] + wrong[:take]
    rng.shuffle(chosen)
    yes, no = VERDICTS[mode]
    return [BootstrapExample(run_id, f"judge-{i:05d}", "judge", c.prompt_id, c.generation_id,
                             judge_prompt(c.question, c.text, mode), yes if c.correct else no,
                             no if c.correct else yes, bool(c.correct)) for i, c in enumerate(chosen)]


def _pairwise_examples(run_id: str, unique: list[Candidate], limit: int, rng: random.Random) -> list[BootstrapExample]:
    by_prompt: dict[str, list[Candidate]] = {}
    for c in unique:
        by_prompt.setdefault(c.prompt_id, []).append(c)
    out = []
    for prompt_id, group in by_prompt.items():
        right = [c for c in group if c.correct]
        wrong = [c for c in group if not c.correct]
        if not right or not wrong or len(out) >= limit:
            continue
        good, bad = rng.choice(right), rng.choice(wrong)
        first = rng.random() < 0.5  # the right answer as A half the time: no position to learn
        a, b = (good, bad) if first else (bad, good)
        won, lost = ("A", "B") if first else ("B", "A")
        ask = compare_prompt(good.question, a.text, b.text)
        out.append(BootstrapExample(run_id, f"judge-{len(out):05d}", "judge", prompt_id,
                                    f"{a.generation_id},{b.generation_id}", ask,
                                    f"{PAIRWISE_PREFIX} {won}", f"{PAIRWISE_PREFIX} {lost}", first))
    return out


def generation_examples(run_id: str, greedy: list[Candidate]) -> list[BootstrapExample]:
    """The seed model's own greedy answers as SFT targets (no label is read)."""
    return [BootstrapExample(run_id, f"generation-{i:05d}", "generation", c.prompt_id, c.generation_id,
                             c.prompt_text, c.text, None, None) for i, c in enumerate(greedy) if c.text.strip()]


def right_answer_examples(run_id: str, candidates: list[Candidate]) -> list[BootstrapExample]:
    """One verifier-right answer per seed prompt as SFT targets, the greedy answer preferred."""
    best: dict[str, Candidate] = {}
    for c in sorted(candidates, key=lambda c: c.purpose != "bootstrap_greedy"):
        if c.correct and c.text.strip():
            best.setdefault(c.prompt_id, c)
    return [BootstrapExample(run_id, f"generation-{i:05d}", "generation", c.prompt_id, c.generation_id,
                             c.prompt_text, c.text, None, None) for i, c in enumerate(best.values())]


def bootstrap_model_dir(cfg, run_id: str) -> Path:
    return run_dir(cfg, run_id) / "bootstrap" / "model"


def run_bootstrap(store: Store, cfg, run_id: str) -> BootstrapResult:
    """Sample, label, balance, mix, fine-tune the seed model; measure judge and generator before and after."""
    bc, g = cfg.bootstrap, cfg.generate
    seed_dir = store.iteration(run_id, 0).model_path
    prompts = store.prompts(run_id, "seed")
    judged, answered = prompts[:bc.judge_prompts], prompts[bc.judge_prompts:]
    sample = SamplingSpec(bc.samples, g.temperature, g.top_p, g.max_tokens, cfg.seed)
    greedy = SamplingSpec(1, 0.0, 1.0, g.max_tokens, cfg.seed)
    generate_samples(store, cfg, run_id, 0, seed_dir, judged, sample, "bootstrap_sample")
    generate_samples(store, cfg, run_id, 0, seed_dir, answered, greedy, "bootstrap_greedy")
    if not store.bootstrap_examples(run_id):
        store.add(judge_examples(run_id, cfg.judge.mode, store.candidates(run_id, 0, ["bootstrap_sample"]),
                                 bc.judge_examples, cfg.seed))
        if bc.generation_answers == "right":
            store.add(right_answer_examples(
                run_id, store.candidates(run_id, 0, ["bootstrap_greedy", "bootstrap_sample"])))
        else:
            store.add(generation_examples(run_id, store.candidates(run_id, 0, ["bootstrap_greedy"])))
    examples = store.bootstrap_examples(run_id)
    judges = [e for e in examples if e.kind == "judge"]
    if not judges:
        raise RuntimeError("bootstrap: the seed model's samples on the seed split are all right or all wrong, so "
                           "there is nothing balanced to teach; raise bootstrap.judge_prompts or samples")
    before = judge_probe(store, cfg, run_id, 0, seed_dir, guard=False)
    out_dir = bootstrap_model_dir(cfg, run_id)
    stats = {"loss": None, "seconds": 0.0}
    if not (out_dir / "config.json").is_file():  # saved atomically: a whole model, from an attempt that crashed later
        train_cfg = dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, learning_rate=bc.learning_rate, batch_size=bc.batch_size))
        stats = run_sft(train_cfg, seed_dir, out_dir, [{"prompt_text": e.user_text, "text": e.completion}
                                                      for e in examples], epochs=bc.epochs)
    after = judge_probe(store, cfg, run_id, 0, out_dir, guard=False)
    heldout = store.prompts(run_id, "heldout")
    generate_samples(store, cfg, run_id, 0, out_dir, heldout,
                     SamplingSpec(1, 0.0, 1.0, cfg.eval.max_tokens, cfg.seed), BOOTSTRAPPED[1])
    diff = greedy_difference(store, run_id, SEED, BOOTSTRAPPED)
    digest = model_hash(out_dir)
    result = BootstrapResult(
        model_dir=str(out_dir), model_hash=digest, judge_examples=len(judges),
        judge_examples_right=sum(bool(e.label) for e in judges), generation_examples=len(examples) - len(judges),
        train_loss=stats["loss"], train_seconds=stats["seconds"], judge_auc_before=before.auc,
        judge_auc_after=after.auc, judge_auc_after_low=after.auc_low, judge_auc_after_high=after.auc_high,
        accuracy_before=store.metric(run_id, 0, "heldout", "accuracy_greedy"),
        accuracy_after=_rate(store.greedy_correctness(run_id, *BOOTSTRAPPED)),
        accuracy_diff=diff and diff.difference, accuracy_diff_low=diff and diff.low,
        accuracy_diff_high=diff and diff.high)
    store.add([Evaluation(run_id, 0, "bootstrap", name, value, digest)
               for name, value in result.metrics().items() if name != "seconds"])
    log.info("bootstrap: judge AUC %s -> %s, held-out greedy accuracy %s -> %s (%s)", before.auc, after.auc,
             result.accuracy_before, result.accuracy_after, diff.describe() if diff else "no common items")
    return result


def _rate(flags: dict[str, bool]) -> float | None:
    return sum(flags.values()) / len(flags) if flags else None


def start_model_dir(store: Store, run_id: str) -> str:
    """The model iteration 1 starts from (and Temporal anchors to): the bootstrapped one when there is one."""
    done = store.ledger_entry(run_id, 0, "bootstrap")
    if done is not None:
        return from_json(done.summary_json).model_dir
    return store.iteration(run_id, 0).model_path
