"""`selfimprove report RUN_ID`: PNG plots of a run's iterations and a markdown summary.

Plots: held-out accuracy (greedy, maj@k, pass@k) per iteration; greedy accuracy with 95% error
bars (paired, vs the seed); the distribution of the combined self-reward per iteration; response
length per iteration; pair margins per iteration. summary.md holds the `show` table.
Everything is read from DuckDB, so a report can be made for any run, finished or not.
"""
from __future__ import annotations

from pathlib import Path

from selfimprove.storage.db import Store
from selfimprove.tasks.summary import iteration_rows, iteration_table


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(6, 4), dpi=100)


def _boxplot(path: Path, groups: dict[int, list[float]], title: str, ylabel: str) -> Path:
    plt, fig, ax = _figure()
    its = sorted(k for k, v in groups.items() if v)
    if its:
        ax.boxplot([groups[i] for i in its], tick_labels=[str(i) for i in its], showmeans=True)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set(title=title, xlabel="iteration", ylabel=ylabel)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _greedy_ci(path: Path, rows: list[dict], run_id: str) -> Path:
    """Greedy accuracy per iteration with 95% bars. From iteration 1 on, the bar is the paired interval
    of the difference vs the seed, placed at seed accuracy + [low, high]: it crosses the seed's line
    exactly when the change is within noise (an unpaired per-model interval would be wider and
    could not tell that)."""
    plt, fig, ax = _figure()
    seed = next((r["accuracy_greedy"] for r in rows if r["iteration"] == 0), None)
    points = [(r["iteration"], r["accuracy_greedy"]) for r in rows if r.get("accuracy_greedy") is not None]
    bars = [r for r in rows if seed is not None and r["iteration"] >= 1 and r.get("accuracy_greedy") is not None
            and r.get("diff_vs_seed_low") is not None]
    if points:
        ax.plot(*zip(*points), marker="o", color="C0", label="greedy accuracy")
    if bars:
        # errorbar takes distances from the point; clipped at 0 in case NULL-reference items make the
        # point (all items) and seed + difference (items with a reference) differ slightly.
        ax.errorbar([r["iteration"] for r in bars], [r["accuracy_greedy"] for r in bars], capsize=4, fmt="none",
                    ecolor="C0", label="seed acc + 95% paired CI of (iteration - seed)",
                    yerr=[[max(r["accuracy_greedy"] - seed - r["diff_vs_seed_low"], 0.0) for r in bars],
                          [max(seed + r["diff_vs_seed_high"] - r["accuracy_greedy"], 0.0) for r in bars]])
    if seed is not None:
        ax.axhline(seed, color="gray", linestyle="--", label="seed (iteration 0)")
    if not points:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set(title=f"held-out greedy accuracy, 95% CI of the gain vs seed (paired)\nrun {run_id}",
           xlabel="iteration", ylabel="accuracy")
    ax.set_xticks([r["iteration"] for r in rows])
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(store: Store, run_id: str, out_dir: str | Path) -> list[Path]:
    """Write the plots and summary.md into out_dir; return the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = iteration_rows(store, run_id)
    plt, fig, ax = _figure()
    for key, label in (("accuracy_greedy", "greedy"), ("maj_at_k", "maj@k"), ("pass_at_k", "pass@k")):
        points = [(r["iteration"], r[key]) for r in rows if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    ax.set(title=f"held-out accuracy, run {run_id}", xlabel="iteration", ylabel="accuracy", ylim=(0, 1))
    ax.set_xticks([r["iteration"] for r in rows])
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy.png")
    plt.close(fig)
    files = [out / "accuracy.png", _greedy_ci(out / "accuracy_ci.png", rows, run_id),
             _boxplot(out / "rewards.png", store.values_by_iteration(run_id, "reward"), "self-reward of candidates",
                      "reward"),
             _boxplot(out / "response_length.png", store.values_by_iteration(run_id, "greedy_length"),
                      "held-out response length (greedy)", "tokens"),
             _boxplot(out / "pair_margins.png", store.values_by_iteration(run_id, "margin"), "pair margins",
                      "chosen - rejected")]
    summary = out / "summary.md"
    run = store.run(run_id)
    summary.write_text(
        f"# Run {run_id}\n\nmethod `{run.method}`, seed model `{run.seed_model}`\n\n"
        f"```\n{iteration_table(store, run_id)}\n```\n\n"
        + "".join(f"![{p.stem}]({p.name})\n" for p in files))
    return [*files, summary]
