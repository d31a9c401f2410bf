"""Records at scale: 1M generations with their judgments and rewards written into one project file
the way the stages write them (typed records through Store.add, one transaction per chunk), then
the reads a user and a resumed run make, timed.

    python benchmarks/scale.py [--generations 1000000] [--chunk 1024] [--dir DIR]

Shape: 40 iterations x 6,250 prompts x 4 samples (48 token ids and logprobs per sample), a
judgment and two reward rows (the judge signal and the combined reward) per generation, held-out
evaluations per iteration. Prints seconds per step and rows per second.
"""
from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

from selfimprove.env import apply_defaults

apply_defaults()

from selfimprove.storage.db import Store  # noqa: E402
from selfimprove.storage.records import (  # noqa: E402
    Evaluation,
    Generation,
    Iteration,
    Judgment,
    Prompt,
    Reward,
    Run,
    now,
)
from selfimprove.tasks.report import write_report  # noqa: E402
from selfimprove.tasks.summary import iteration_table  # noqa: E402

RUN, SAMPLES, TOKENS = "scale", 4, 48


def write(store: Store, generations: int, chunk: int) -> dict[str, float]:
    rng = random.Random(0)
    prompts_per_iteration = 6250
    iterations = max(1, generations // (prompts_per_iteration * SAMPLES))
    store.add([Run(RUN, "scale", "self_rewarding", now(), "{}", "h", "/seed")])
    store.add([Prompt(RUN, f"train-{i:05d}", "train", "jsonl", f"q{i}", str(i), f"q{i}", "{}")
               for i in range(prompts_per_iteration)])
    tokens = list(range(100, 100 + TOKENS))
    logprobs = [-0.5] * TOKENS
    spent = {"generations": 0.0, "judgments": 0.0, "rewards": 0.0}
    for it in range(1, iterations + 1):
        store.add([Iteration(RUN, it, f"/m{it}", f"h{it}")])
        ids = [(f"train-{p:05d}", k) for p in range(prompts_per_iteration) for k in range(SAMPLES)]
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            gids = [f"{RUN}:{it}:train:{p}:{k}" for p, k in part]
            mark = time.perf_counter()
            store.add([Generation(g, RUN, it, "train", p, k, "/m", "h", "vllm", 0.8, "Answer: 7", tokens, logprobs,
                                  "stop", TOKENS, "7", rng.random() < 0.3) for g, (p, k) in zip(gids, part)])
            spent["generations"] += time.perf_counter() - mark
            mark = time.perf_counter()
            scores = [rng.random() * 5 for _ in gids]
            store.add([Judgment(f"{g}:j0", RUN, it, g, 0, "logprob", "h", "{}", s, True) for g, s in zip(gids, scores)])
            spent["judgments"] += time.perf_counter() - mark
            mark = time.perf_counter()
            store.add([Reward(RUN, it, g, signal, s) for g, s in zip(gids, scores) for signal in ("judge", "reward")])
            spent["rewards"] += time.perf_counter() - mark
        store.add([Evaluation(RUN, it, "heldout", m, rng.random(), "h") for m in ("accuracy_greedy", "maj_at_k")])
        for stage in ("generate", "judge", "score", "build", "train", "evaluate"):
            store.mark_stage_done(RUN, it, stage, rng.random() * 60, '{"type": "StageResult", "seconds": 1.0}')
    return spent


def timed(label: str, fn, results: dict) -> None:
    started = time.perf_counter()
    fn()
    results[label] = time.perf_counter() - started
    print(f"{label}: {results[label]:.2f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generations", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1024, help="rows per transaction (as engine.write_every)")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="selfimprove-scale-"))
    results: dict[str, float] = {}
    store = Store(folder / "scale.duckdb")
    started = time.perf_counter()
    spent = write(store, args.generations, args.chunk)
    results["write (generations + judgments + rewards)"] = time.perf_counter() - started
    count = store.query("SELECT count(*) AS n FROM generations")[0]["n"]
    print(f"wrote {count} generations in {results['write (generations + judgments + rewards)']:.1f}s "
          f"({', '.join(f'{k} {v:.1f}s' for k, v in spent.items())}); file "
          f"{(folder / 'scale.duckdb').stat().st_size / 1e9:.2f} GB", flush=True)
    last = store.query("SELECT max(iteration) AS it FROM iterations")[0]["it"]
    reader = Store(folder / "scale.duckdb", create=False)
    timed("iteration_summary view", lambda: reader.iteration_summary(RUN), results)
    timed("show (iteration table)", lambda: iteration_table(reader, RUN), results)
    timed("report (plots + summary)", lambda: write_report(reader, RUN, folder / "report"), results)
    timed("resume: what is left to generate", lambda: reader.sample_counts(RUN, last, "train"), results)
    timed("resume: what is left to judge", lambda: reader.judged_generation_ids(RUN, last, 1), results)
    timed("resume: ledger entry", lambda: reader.ledger_entry(RUN, last, "judge"), results)
    print(f"\n{'step':<42}{'seconds':>9}  target")
    targets = {"write": 120.0, "iteration_summary": 2.0, "show": 2.0, "resume": 1.0}
    for label, seconds in results.items():
        target = next((t for k, t in targets.items() if label.startswith(k)), None)
        verdict = "" if target is None else f"< {target:g}s {'met' if seconds < target else 'MISSED'}"
        print(f"{label:<42}{seconds:>9.2f}  {verdict}")
    if not args.dir:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
