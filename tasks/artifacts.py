"""What a run shows in the Prefect UI: per iteration a metrics table and a markdown page of
samples (prompt, candidates with their rewards and judge rationales, the chosen/rejected pair),
and at the end the run's report. Everything is read back from DuckDB, so what the UI shows is
exactly what `selfimprove sql` would return.
"""
from __future__ import annotations

import re

from selfimprove.storage.db import Store
from selfimprove.tasks.summary import iteration_rows, iteration_table

SAMPLE_PROMPTS = 3  # prompts shown per iteration: enough to read, small enough to scan
MAX_CHARS = 400  # long candidates and judge texts are cut in the UI (DuckDB has them whole)


def artifact_key(run_id: str, suffix: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{run_id}-{suffix}".lower()).strip("-")


def _cut(text: str | None) -> str:
    text = (text or "").strip().replace("\n", " ")
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + " ..."


def _cell(text: str | None) -> str:
    return _cut(text).replace("|", "\\|")


def metrics_rows(store: Store, run_id: str, iteration: int) -> list[dict]:
    """The iteration's numbers as (metric, value) rows: held-out metrics, stage seconds, counts."""
    row = next((r for r in iteration_rows(store, run_id) if r["iteration"] == iteration), {"iteration": iteration})
    return [{"metric": k if not k.startswith("t_") else f"seconds/{k[2:]}",
             "value": round(v, 4) if isinstance(v, float) else v}
            for k, v in row.items() if k not in ("iteration", "run_id") and v is not None]


def samples_markdown(store: Store, run_id: str, iteration: int) -> str:
    """A few of the iteration's training prompts: every candidate, its scores, and the pair built."""
    prompt_ids = store.sample_prompt_ids(run_id, iteration, SAMPLE_PROMPTS)
    by_prompt = {p.prompt_id: p for p in store.pairs(run_id, iteration)}
    out = [f"# Iteration {iteration} of run `{run_id}`: samples\n",
           f"{len(prompt_ids)} training prompts (largest pair margins first). Full records: "
           f"`selfimprove sql \"SELECT * FROM pair_lineage WHERE run_id = '{run_id}' AND iteration = {iteration}\"`\n"]
    for prompt_id in prompt_ids:
        prompt = store.prompt(run_id, prompt_id)
        out.append(f"## Prompt `{prompt_id}`\n\n> {_cut(prompt.prompt_text)}\n\n"
                   f"reference answer: `{prompt.answer}`\n")
        out.append("| source | # | candidate | answer | correct | reward | judge | judge says |\n"
                   "|---|---|---|---|---|---|---|---|")
        pair = by_prompt.get(prompt_id)
        for c in store.candidate_details(run_id, iteration, prompt_id):
            mark = ""
            if pair and c.generation_id == pair.chosen_generation_id:
                mark = " **(chosen)**"
            elif pair and c.generation_id == pair.rejected_generation_id:
                mark = " **(rejected)**"
            reward = "-" if c.reward is None else f"{c.reward:.3f}"
            judge = "-" if c.judge_score is None else f"{c.judge_score:.2f}"
            out.append(f"| {c.purpose}{mark} | {c.sample_index} | {_cell(c.text)} | {c.extracted_answer} "
                       f"| {c.correct} | {reward} | {judge} | {_cell(c.judge_text)} |")
        if pair:
            out.append(f"\nPair: chosen ({pair.chosen_source}, score {pair.chosen_score:.3f}) vs rejected "
                       f"({pair.rejected_source}, score {pair.rejected_score:.3f}), margin {pair.margin:.3f}\n")
        out.append("")
    return "\n".join(out)


def publish_iteration(store: Store, run_id: str, iteration: int) -> list[str]:
    """Create the iteration's table and markdown artifacts in the current Prefect flow run."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    ids = [create_table_artifact(metrics_rows(store, run_id, iteration),
                                 key=artifact_key(run_id, f"iteration-{iteration}-metrics"),
                                 description=f"Iteration {iteration} metrics of run {run_id}")]
    if iteration > 0:
        ids.append(create_markdown_artifact(samples_markdown(store, run_id, iteration),
                                            key=artifact_key(run_id, f"iteration-{iteration}-samples"),
                                            description=f"Iteration {iteration}: prompts, candidates, judge, pair"))
    return [str(i) for i in ids]


def publish_report(store: Store, run_id: str, files: list, mlflow_link: str) -> str:
    """The run's summary table and where its plots are, as one markdown artifact."""
    from prefect.artifacts import create_markdown_artifact

    listing = "\n".join(f"- `{f}`" for f in files)
    text = (f"# Run `{run_id}`\n\n```\n{iteration_table(store, run_id)}\n```\n\n"
            f"Plots and summary (also logged to MLflow, {mlflow_link}, under `report/`):\n\n{listing}\n")
    return str(create_markdown_artifact(text, key=artifact_key(run_id, "report"),
                                        description=f"Report of run {run_id}"))
