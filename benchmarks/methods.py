"""Methods side by side: the same seed model, prompts and budget, N iterations each.

    python benchmarks/methods.py [--iterations 3] [--methods self_rewarding,self_rewarding+boot,...]
                                 [--config configs/demo.yaml] [--eval-size 500] [--probe 100]
                                 [--set key=value ...] [--stamp STAMP]

Each method is a real run of the pipeline (one Prefect flow per method, records in
<data_dir>/methods-bench.duckdb, MLflow experiment per method) from `--config`, on the same
--eval-size held-out items and the same --probe labelled probe prompts. "+boot" variants teach the
judge first (bootstrap) and train with the guards and replay (GUARDS, as the demo); the plain variants
run without them. A method that fails is reported and the others still run.
Prints per method and iteration: held-out greedy accuracy with the paired 95% interval of its
difference to the seed, maj@k, the judge's AUC on the fixed probe, no-answer rate, mean length,
examples kept and seconds per stage. Runs resume from their stage ledgers: rerun with --stamp.
"""
from __future__ import annotations

import argparse
import time

from selfimprove.env import apply_defaults  # noqa: E402

apply_defaults()

from selfimprove.config import load_config  # noqa: E402

# Without the guards: the loop as in the papers (an answer-less candidate may be chosen, no NLL term).
NO_BOOTSTRAP = ["bootstrap.enabled=false", "judge.min_probe_auc=null"]  # the other methods, as their papers run them
PLAIN = [*NO_BOOTSTRAP, "pairs.chosen_must_answer=false", "train.sft_weight=0.0"]
# The judge bootstrap and the guards as the demo runs them (chosen must answer, probe AUC floor: warn,
# 32 bootstrap judge examples replayed per iteration).
GUARDS = ["bootstrap.enabled=true", "pairs.chosen_must_answer=true", "judge.min_probe_auc=0.6", "judge.on_low_auc=warn",
          "bootstrap.replay=32"]
METHODS = {
    "self_rewarding": ["method=self_rewarding", "train.algorithm=dpo", *PLAIN],
    "self_rewarding+boot": ["method=self_rewarding", "train.algorithm=dpo", *GUARDS],
    "self_rewarding+boot+nll": ["method=self_rewarding", "train.algorithm=dpo", *GUARDS, "train.sft_weight=1.0"],
    "self_rewarding+boot-replay": ["method=self_rewarding", "train.algorithm=dpo", *GUARDS, "bootstrap.replay=0"],
    "temporal": ["method=temporal", "train.algorithm=dpo", *PLAIN],
    "temporal+boot": ["method=temporal", "train.algorithm=dpo", *GUARDS],
    "bstar": ["method=bstar", "train.algorithm=sft", "method.temperatures=[0.5, 0.8, 1.1]", "method.probe_prompts=16",
              "method.probe_samples=4", *NO_BOOTSTRAP],
    "grpo_majority": ["method=self_rewarding", "train.algorithm=grpo",
                      "reward.signals=[{name: majority_vote, weight: 1.0}]", *NO_BOOTSTRAP],
}


def table(store, run_ids: dict[str, str]) -> str:
    """One block of rows per method, from the same iteration summary `selfimprove show` prints."""
    from selfimprove.tasks.judge import judge_statistics, pair_accuracy
    from selfimprove.tasks.judge_probe import probe_auc_interval
    from selfimprove.tasks.summary import STAGE_COLUMNS, iteration_rows

    def fmt(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    lines = [f"{'method':<20}{'iter':>5}{'acc':>7}{'vs seed [95% CI]':>26}{'maj@k':>7}{'probe_auc [95% CI]':>21}"
             f"{'pair_acc probe/own':>24}{'no_ans':>7}{'len':>6}{'kept':>6}  seconds per stage"]
    for method, run_id in run_ids.items():
        probe_hash = {e.iteration: e.model_hash for e in store.evaluations(run_id)
                      if e.split == "probe" and e.metric == "judge_auc"}
        for r in iteration_rows(store, run_id):
            kept = r["pairs"] if r["pairs"] is not None else r["sft_examples"]
            diff = "-" if r["diff_vs_seed"] is None else (
                f"{r['diff_vs_seed']:+.3f} [{r['diff_vs_seed_low']:+.3f},{r['diff_vs_seed_high']:+.3f}]")
            low, high = probe_auc_interval(store, run_id, r["probe_auc"])
            auc = "-" if low is None else f"{r['probe_auc']:.3f} [{low:.2f},{high:.2f}]"
            # Within-prompt judge accuracy (tasks/judge.py: pair_accuracy), from the stored judgments: on the
            # probe answers, and on this iteration's own candidates (what its pairs are built from).
            it = r["iteration"]
            on_probe = pair_accuracy(store.probe_judgments(run_id, probe_hash[it]))[0] if it in probe_hash else None
            own = judge_statistics(store, run_id, it)
            within = f"{fmt(on_probe, '.2f')}/{fmt(own.pair_accuracy, '.2f')}" + (
                f" n={own.pair_count}" if own.pair_count else "")
            stages = " ".join(f"{k[2:]}={r[k]:.0f}" for k in STAGE_COLUMNS if r.get(k) is not None)
            lines.append(f"{method:<20}{r['iteration']:>5}{fmt(r['accuracy_greedy']):>7}{diff:>26}"
                         f"{fmt(r['maj_at_k']):>7}{auc:>21}{within:>24}{fmt(r['no_answer_rate']):>7}"
                         f"{fmt(r['mean_response_tokens'], '.1f'):>6}{fmt(kept, 'd'):>6}  {stages}")
        boot = {e.metric: e.value for e in store.evaluations(run_id) if e.split == "bootstrap"}
        if boot:
            b = {k: fmt(boot.get(k)) for k in ("judge_auc_before", "judge_auc_after", "accuracy_before",
                                                "accuracy_after")}
            d = {k: fmt(boot.get(k), "+.3f") for k in ("accuracy_diff", "accuracy_diff_low", "accuracy_diff_high")}
            lines.append(f"{'':<20}  bootstrap: probe AUC {b['judge_auc_before']} -> {b['judge_auc_after']}, "
                         f"greedy accuracy {b['accuracy_before']} -> {b['accuracy_after']} ({d['accuracy_diff']} "
                         f"[{d['accuracy_diff_low']}, {d['accuracy_diff_high']}])")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--eval-size", type=int, default=500)
    parser.add_argument("--probe", type=int, default=100)
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
                                        f"data.eval_size={args.eval_size}", f"judge.probe_size={args.probe}",
                                        *METHODS[method], *args.overrides])
        run_ids[method] = f"{method.replace('+', '-')}-{stamp}"
        started = time.perf_counter()
        try:
            selfimprove_run(config=cfg.to_dict(), run_id=run_ids[method])
        except Exception as exc:  # one broken method must not cost the hours the others took
            print(f"{method}: FAILED: {type(exc).__name__}: {exc}", flush=True)
        walls[method] = time.perf_counter() - started
        store = store_for(cfg)
        print(f"{method}: {walls[method] / 60:.1f} min", flush=True)
    print("\n" + table(store, run_ids))
    print("\nwall minutes: " + ", ".join(f"{m} {w / 60:.1f}" for m, w in walls.items()))


if __name__ == "__main__":
    main()
