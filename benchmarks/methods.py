"""Methods side by side: the same seed model, prompts and budget, N iterations each.

    python benchmarks/methods.py [--iterations 3] [--methods self_rewarding,temporal,bstar,grpo_majority]
                                 [--config configs/demo.yaml] [--set key=value ...] [--stamp STAMP]

Each method is a real run of the pipeline (one Prefect flow per method, records in
<data_dir>/methods-bench.duckdb, MLflow experiment per method) from `--config`, plus a fixed
200-item GSM8K test subset as a held-out check that no method trains on. Prints one table:
held-out accuracy per iteration, training examples kept, judge AUC, GSM8K accuracy, and wall
seconds per stage.
"""
from __future__ import annotations

import argparse
import time

from selfimprove.env import apply_defaults  # noqa: E402

apply_defaults()

from selfimprove.config import load_config  # noqa: E402

METHODS = {
    "self_rewarding": ["method=self_rewarding", "train.algorithm=dpo"],
    "temporal": ["method=temporal", "train.algorithm=dpo"],
    "bstar": ["method=bstar", "train.algorithm=sft", "method.temperatures=[0.5, 0.8, 1.1]", "method.probe_prompts=16",
              "method.probe_samples=4"],
    "grpo_majority": ["method=self_rewarding", "train.algorithm=grpo",
                      "reward.signals=[{name: majority_vote, weight: 1.0}]"],
}


def table(store, run_ids: dict[str, str]) -> str:
    """One block of rows per method, from the same iteration summary `selfimprove show` prints."""
    from selfimprove.tasks.summary import STAGE_COLUMNS, iteration_rows

    def fmt(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    lines = [f"{'method':<15}{'iter':>5}{'acc':>7}{'maj@k':>7}{'gsm8k':>7}{'kept':>6}{'judge_auc':>10}"
             "  seconds per stage"]
    for method, run_id in run_ids.items():
        for r in iteration_rows(store, run_id):
            kept = r["pairs"] if r["pairs"] is not None else r["sft_examples"]
            stages = " ".join(f"{k[2:]}={r[k]:.0f}" for k in STAGE_COLUMNS if r.get(k) is not None)
            lines.append(f"{method:<15}{r['iteration']:>5}{fmt(r['accuracy_greedy']):>7}{fmt(r['maj_at_k']):>7}"
                         f"{fmt(r.get('gsm8k/accuracy_greedy')):>7}{fmt(kept, 'd'):>6}{fmt(r['judge_auc']):>10}"
                         f"  {stages}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--stamp", default=None,
                        help="reuse the run ids of an earlier, interrupted benchmark (its YYYYmmdd-HHMMSS stamp): "
                             "each method's run resumes from its stage ledger")
    args = parser.parse_args()
    import logging

    logging.getLogger("selfimprove").setLevel(logging.INFO)  # stage progress, as the CLI shows it
    from selfimprove.flows.pipeline import selfimprove_run
    from selfimprove.tasks.common import store_for

    stamp = args.stamp or time.strftime("%Y%m%d-%H%M%S")
    print(f"benchmark stamp {stamp} (resume with --stamp {stamp})", flush=True)
    run_ids, walls = {}, {}
    store = None
    for method in args.methods.split(","):
        cfg = load_config(args.config, [f"iterations={args.iterations}", "project=methods-bench",
                                        "eval_data={source: gsm8k, eval_size: 200, train_size: 0, seed: 0}",
                                        *METHODS[method], *args.overrides])
        run_ids[method] = f"{method}-{stamp}"
        started = time.perf_counter()
        selfimprove_run(config=cfg.to_dict(), run_id=run_ids[method])
        walls[method] = time.perf_counter() - started
        store = store_for(cfg)
        print(f"{method}: {walls[method] / 60:.1f} min", flush=True)
    print("\n" + table(store, run_ids))
    print("\nwall minutes: " + ", ".join(f"{m} {w / 60:.1f}" for m, w in walls.items()))


if __name__ == "__main__":
    main()
