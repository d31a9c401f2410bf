"""The iteration table a user reads at the end of a run (and with `selfimprove show`): the rows of
the `iteration_summary` view (storage/schema.py), formatted, plus the accuracy on any extra
evaluation source (e.g. GSM8K). vs_seed / vs_prev: the paired difference in held-out greedy
accuracy with its 95% interval, so a change inside the noise reads as such."""
from __future__ import annotations

from dataclasses import fields

from selfimprove.storage.db import Store
from selfimprove.storage.records import IterationSummary
from selfimprove.tasks.compare import SEED, greedy_difference

COLUMNS = [("iter", "iteration"), ("acc", "accuracy_greedy"), ("vs_seed", "diff_vs_seed"), ("vs_prev", "diff_vs_prev"),
           ("maj@k", "maj_at_k"), ("pass@k", "pass_at_k"), ("len", "mean_response_tokens"),
           ("no_ans", "no_answer_rate"), ("judge_mean", "judge_score_mean"), ("judge_auc", "judge_auc"),
           ("probe_auc", "probe_auc"), ("unparsed", "judge_parse_failure_rate"), ("pairs", "pairs"),
           ("sft", "sft_examples"), ("loss", "train_loss")]
OPTIONAL = {"diff_vs_seed", "diff_vs_prev", "probe_auc"}  # hidden when no row has them (older runs, most methods)
DIFFS = {"diff_vs_seed", "diff_vs_prev"}  # shown with their interval: "+0.050 [-0.025,+0.125]"
STAGE_COLUMNS = [f.name for f in fields(IterationSummary) if f.name.startswith("t_")]


def iteration_rows(store: Store, run_id: str) -> list[dict]:
    """The view's rows as dicts, with `<split>/accuracy_greedy` for each extra evaluation source."""
    rows = {r.iteration: {f.name: getattr(r, f.name) for f in fields(r)} for r in store.iteration_summary(run_id)}
    for e in store.evaluations(run_id):
        if e.split not in ("train", "heldout") and e.metric == "accuracy_greedy" and e.iteration in rows:
            rows[e.iteration][f"{e.split}/accuracy_greedy"] = e.value
    return [rows[k] for k in sorted(rows)]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _cell(row: dict, key: str) -> str:
    if key in DIFFS and row.get(key) is not None and row.get(f"{key}_low") is not None:
        return f"{row[key]:+.3f} [{row[f'{key}_low']:+.3f},{row[f'{key}_high']:+.3f}]"
    return _fmt(row.get(key))


def noise_line(store: Store, run_id: str, rows: list[dict]) -> str | None:
    """Whether the last evaluated iteration's gain over the seed is above, below or within noise of zero."""
    last = next((r["iteration"] for r in reversed(rows) if r["iteration"] >= 1 and r.get("diff_vs_seed") is not None),
                None)
    diff = greedy_difference(store, run_id, SEED, (last, "eval_greedy")) if last is not None else None
    if diff is None:
        return None
    return f"iteration {last} vs seed, held-out greedy accuracy (paired 95% CI): {diff.describe()}"


def iteration_table(store: Store, run_id: str) -> str:
    rows = iteration_rows(store, run_id)
    extra = sorted({k for r in rows for k in r if k.endswith("/accuracy_greedy")})
    shown = [(h, k) for h, k in COLUMNS if k not in OPTIONAL or any(r.get(k) is not None for r in rows)]
    shown += [(k.replace("/accuracy_greedy", "_acc"), k) for k in extra]
    shown += [(k, k) for k in STAGE_COLUMNS if any(r.get(k) is not None for r in rows)]
    body = [[_cell(r, k) for _, k in shown] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, (h, _) in enumerate(shown)]
    lines = ["  ".join(h.rjust(w) for (h, _), w in zip(shown, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths)) for b in body]
    notes = [n for n in (bootstrap_line(store, run_id), noise_line(store, run_id, rows)) if n]
    return "\n".join(lines + ([""] if notes else []) + notes)


def bootstrap_line(store: Store, run_id: str) -> str | None:
    """The judge bootstrap's before -> after (iteration 1 starts from the bootstrapped model)."""
    b = {e.metric: e.value for e in store.evaluations(run_id) if e.split == "bootstrap"}
    if not b:
        return None
    change = "-" if b.get("accuracy_diff") is None else (
        f"{b['accuracy_diff']:+.3f} [{b['accuracy_diff_low']:+.3f}, {b['accuracy_diff_high']:+.3f}]")
    return (f"judge bootstrap ({b.get('judge_examples', 0):.0f} judge + {b.get('generation_examples', 0):.0f} "
            f"generation examples): probe AUC {_fmt(b.get('judge_auc_before'))} -> {_fmt(b.get('judge_auc_after'))}, "
            f"held-out greedy accuracy {_fmt(b.get('accuracy_before'))} -> {_fmt(b.get('accuracy_after'))} "
            f"({change}, paired 95% CI)")
