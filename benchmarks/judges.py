"""The judge bootstrap per judge format: the judge's AUC and the generator's accuracy, before and after.

    python benchmarks/judges.py [--config configs/demo.yaml] [--formats verify,logprob,pairwise,text]
                                [--eval-size 500] [--probe 100] [--stamp STAMP] [--set key=value ...]

For each judge format this runs the pipeline's own stages (no Prefect: prepare, the seed's held-out
evaluation, the judge probe, tasks/bootstrap.py) as one run in <data_dir>/judges-bench.duckdb. The
probe (the seed model's sampled answers to --probe labelled prompts, the same for every format) is
judged by the seed model and by the bootstrapped one: AUC before -> after. The generator's held-out
greedy accuracy (--eval-size items) before -> after comes with the paired 95% interval of the change.
Every stage is ledgered: rerun with the same --stamp to resume or to reprint the table.
"""
from __future__ import annotations

import argparse
import time

from selfimprove.env import apply_defaults  # noqa: E402

apply_defaults()

from selfimprove.config import load_config  # noqa: E402
from selfimprove.storage.db import Store  # noqa: E402
from selfimprove.tasks.bootstrap import run_bootstrap  # noqa: E402
from selfimprove.tasks.common import run_stage  # noqa: E402
from selfimprove.tasks.evaluate import evaluate_model  # noqa: E402
from selfimprove.tasks.judge_probe import judge_probe, probe_auc_interval  # noqa: E402
from selfimprove.tasks.prepare import prepare_run  # noqa: E402


def bootstrap_one(store: Store, cfg, run_id: str):
    run_stage(store, run_id, 0, "prepare", lambda: prepare_run(store, cfg, run_id))
    seed_dir = store.iteration(run_id, 0).model_path
    run_stage(store, run_id, 0, "evaluate", lambda: evaluate_model(store, cfg, run_id, 0, seed_dir))
    run_stage(store, run_id, 0, "judge_probe", lambda: judge_probe(store, cfg, run_id, 0, seed_dir, guard=False))
    return run_stage(store, run_id, 0, "bootstrap", lambda: run_bootstrap(store, cfg, run_id))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--formats", default="verify,logprob,pairwise,text")
    parser.add_argument("--eval-size", type=int, default=500)
    parser.add_argument("--probe", type=int, default=100)
    parser.add_argument("--stamp", default=time.strftime("%Y%m%d-%H%M%S"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    import logging

    logging.getLogger("selfimprove").setLevel(logging.INFO)  # stage progress, as the CLI shows it
    rows = []
    for mode in args.formats.split(","):
        cfg = load_config(args.config, [*args.overrides, "bootstrap.enabled=true", f"judge.mode={mode}",
                                         f"judge.probe_size={args.probe}", f"data.eval_size={args.eval_size}",
                                         "eval.k=1", "project=judges-bench"])
        store = Store(f"{cfg.data_dir}/judges-bench.duckdb")
        run_id = f"judges-{args.stamp}-{mode}"
        print(f"== {mode}: run {run_id}", flush=True)
        rows.append((mode, bootstrap_one(store, cfg, run_id), run_id))

    def fmt(v, spec="+.3f"):
        return "-" if v is None else format(v, spec)

    print(f"\njudge bootstrap per judge format (stamp {args.stamp}; probe {args.probe} prompts, "
          f"held-out {args.eval_size} items)")
    print(f"{'format':<10}{'examples':>9}{'auc_before':>11}{'auc_after [95% CI]':>24}{'acc_before':>11}"
          f"{'acc_after':>10}{'acc_change [95% CI]':>30}{'train_s':>9}")
    for mode, r, run_id in rows:
        change = f"{fmt(r.accuracy_diff)} [{fmt(r.accuracy_diff_low)}, {fmt(r.accuracy_diff_high)}]"
        low, high = probe_auc_interval(store, run_id, r.judge_auc_after)
        after = f"{fmt(r.judge_auc_after, '.3f')} [{fmt(low, '.3f')}, {fmt(high, '.3f')}]"
        aucs = f"{fmt(r.judge_auc_before, '.3f'):>11}{after:>24}"
        accs = f"{fmt(r.accuracy_before, '.3f'):>11}{fmt(r.accuracy_after, '.3f'):>10}"
        print(f"{mode:<10}{r.judge_examples:>5}+{r.generation_examples:<3}{aucs}{accs}{change:>30}{r.train_seconds:>9.0f}")
    print("(examples: judge examples, half right and half wrong + the seed model's own greedy answers; "
          "AUC interval: Hanley-McNeil over the probe's right and wrong answers)")


if __name__ == "__main__":
    main()
