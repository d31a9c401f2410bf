"""The iteration table a user reads at the end of a run (and with `selfimprove show`)."""
from __future__ import annotations

import json

from storage.db import Store

COLUMNS = [("iter", "iteration"), ("acc", "accuracy_greedy"), ("maj@k", "maj_at_k"), ("pass@k", "pass_at_k"),
           ("len", "mean_response_tokens"), ("judge_mean", "judge_score_mean"), ("judge_auc", "judge_auc"),
           ("unparsed", "judge_parse_failure_rate"), ("pairs", "pairs"), ("loss", "train_loss")]
STAGES = ["probe", "generate", "judge", "score", "build", "train", "evaluate", "track"]


def iteration_rows(store: Store, run_id: str) -> list[dict]:
    rows: dict[int, dict] = {}
    for e in store.evaluations(run_id):
        name = e["metric"] if e["split"] == "heldout" else f"{e['split']}/{e['metric']}"
        rows.setdefault(e["iteration"], {"iteration": e["iteration"]})[name] = e["value"]
    for led in store.query("SELECT iteration, stage, seconds, summary_json FROM stage_ledger WHERE run_id = ?", [run_id]):
        row = rows.setdefault(led["iteration"], {"iteration": led["iteration"]})
        row[f"s_{led['stage']}"] = led["seconds"]
        summary = json.loads(led["summary_json"])
        if led["stage"] == "judge":
            row.update(judge_score_mean=summary.get("score_mean"), judge_auc=summary.get("auc"),
                       judge_parse_failure_rate=summary.get("parse_failure_rate"))
        elif led["stage"] == "build":
            row["pairs"] = summary.get("pairs")
        elif led["stage"] == "train":
            row["train_loss"] = summary.get("loss")
    return [rows[k] for k in sorted(rows)]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def iteration_table(store: Store, run_id: str) -> str:
    rows = iteration_rows(store, run_id)
    extra = sorted({k for r in rows for k in r if "/" in k and k.endswith("accuracy_greedy")})
    stages = [s for s in STAGES if any(f"s_{s}" in r for r in rows)]
    headers = [h for h, _ in COLUMNS] + [k.replace("/accuracy_greedy", "_acc") for k in extra] + [f"t_{s}" for s in stages]
    keys = [k for _, k in COLUMNS] + extra + [f"s_{s}" for s in stages]
    body = [[_fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)
