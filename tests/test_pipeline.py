"""The whole loop for real: Prefect flow runs, DuckDB file, MLflow SQLite store, TRL DPO, vLLM,
on the tiny model. Asserts what a user would check after a run."""
import mlflow
import pytest
import torch
from mlflow import MlflowClient

from selfimprove.config import config_from_dict
from selfimprove.models.engines import vllm_available
from selfimprove.models.loading import load_model, model_hash
from selfimprove.tasks.common import store_for
from tests.conftest import tiny_config_tree

pytestmark = pytest.mark.skipif(not vllm_available(), reason="the end-to-end run uses vLLM")


def prefect_artifacts(prefix: str) -> dict:
    """Artifacts whose key starts with prefix, latest version per key, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=prefix)))
    return {a.key: a for a in sorted(found, key=lambda a: a.created)}


def count(store, sql, params):
    return store.query(f"SELECT count(*) AS n FROM ({sql})", params)[0]["n"]


def test_two_iterations_end_to_end(tmp_path, tiny_model_dir, prefect_harness, capsys):
    from selfimprove.flows.pipeline import selfimprove_run

    tree = tiny_config_tree(tmp_path / "data", tiny_model_dir)
    cfg = config_from_dict(tree)
    results = selfimprove_run(config=cfg.to_dict(), run_id="e2e")
    store = store_for(cfg)
    train_n, eval_n, n, k = 6, 6, 3, 2

    # Rows per stage and iteration.
    for it in (1, 2):
        train = count(store, "SELECT * FROM generations WHERE run_id='e2e' AND iteration=? AND purpose='train'", [it])
        assert train == train_n * n
        assert count(store, "SELECT * FROM judgments WHERE run_id='e2e' AND iteration=?", [it]) == train_n * n
        pairs = count(store, "SELECT * FROM pairs WHERE iteration=?", [it])
        drops = count(store, "SELECT * FROM pair_drops WHERE iteration=?", [it])
        assert pairs >= 1 and pairs + drops == train_n
    for it in (0, 1, 2):
        assert count(store, "SELECT * FROM generations WHERE iteration=? AND purpose='eval_greedy'", [it]) == eval_n
        assert count(store, "SELECT * FROM generations WHERE iteration=? AND purpose='eval_sample'", [it]) == eval_n * k
        assert count(store, "SELECT * FROM evaluations WHERE iteration=? AND metric='accuracy_greedy'", [it]) == 1
    ledger = {(r["iteration"], r["stage"]) for r in store.query("SELECT iteration, stage FROM stage_ledger", [])}
    assert ledger == {(0, "prepare"), (0, "evaluate"), (0, "track"), (0, "gate")} | {
        (it, s) for it in (1, 2) for s in ("generate", "judge", "score", "build", "train", "evaluate", "track", "gate")}

    # Lineage: iteration 2 sampled from the model iteration 1 trained; pairs point at real generations.
    trained = {r["iteration"]: r for r in store.query("SELECT * FROM train_runs", [])}
    assert {r.model_hash for r in store.generations("e2e", 2, "train")} == {trained[1]["output_model_hash"]}
    assert {r.model_hash for r in store.generations("e2e", 1, "train")} == {model_hash(tiny_model_dir)}
    assert count(store, "SELECT * FROM pairs p LEFT JOIN generations g ON g.generation_id = p.chosen_generation_id "
                        "WHERE g.generation_id IS NULL", []) == 0
    assert len(store.query("SELECT * FROM pair_lineage", [])) == count(store, "SELECT * FROM pairs", [])

    # Training changed every parameter tensor.
    seed = dict(load_model(tiny_model_dir).named_parameters())
    final = dict(load_model(trained[2]["output_model_path"]).named_parameters())
    assert all(not torch.equal(seed[name], final[name]) for name in seed)
    assert all(r["params_changed_fraction"] == 1.0 and r["steps"] >= 1 for r in trained.values())

    # MLflow: parent with metrics per iteration, nested runs, a registered version + alias per iteration.
    client = MlflowClient(f"sqlite:///{tmp_path / 'data' / 'mlflow.db'}")
    parent_id = store.run("e2e").mlflow_run_id
    steps = [m.step for m in client.get_metric_history(parent_id, "eval/accuracy_greedy")]
    assert sorted(steps) == [0, 1, 2]
    assert [m.step for m in client.get_metric_history(parent_id, "judge/score_mean")] == [1, 2]
    assert [m.step for m in client.get_metric_history(parent_id, "pairs/pairs")] == [1, 2]
    children = client.search_runs([client.get_run(parent_id).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(r.info.run_name for r in children) == ["iteration-0", "iteration-1", "iteration-2"]
    versions = client.search_model_versions("name = 't-e2e'")
    assert len(versions) == 3
    for it in (0, 1, 2):
        assert client.get_model_version_by_alias("t-e2e", f"iter-{it}").tags["selfimprove.iteration"] == str(it)
    # Gating off: every iteration is accepted and the champion is the last one.
    assert client.get_model_version_by_alias("t-e2e", "champion").tags["selfimprove.iteration"] == "2"
    assert len(results) == 3 and results[2]["gate"].model_dir == trained[2]["output_model_path"]
    # In Prefect's run list each iteration is named after its run, so two runs can be told apart.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as prefect:
        names = {r.name for r in prefect.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(like_="e2e")))}
    assert {"e2e", "e2e-iteration-1", "e2e-iteration-2"} <= names
    # The run's report went to MLflow with the run's plots.
    logged = {a.path for a in client.list_artifacts(parent_id, "report")}
    assert {"report/accuracy.png", "report/pair_margins.png", "report/summary.md"} <= logged

    # Prefect UI: a metrics table per iteration, a samples page per trained iteration, the report.
    artifacts = prefect_artifacts("e2e-")
    assert {"e2e-iteration-0-metrics", "e2e-iteration-1-metrics", "e2e-iteration-2-metrics",
            "e2e-iteration-1-samples", "e2e-iteration-2-samples", "e2e-report"} <= set(artifacts)
    table = artifacts["e2e-iteration-2-metrics"]
    assert table.type == "table" and "accuracy_greedy" in table.data
    page = artifacts["e2e-iteration-1-samples"].data
    assert page.count("## Prompt") == 3 and "**(chosen)**" in page and "**(rejected)**" in page
    first_pair = store.query("SELECT * FROM pairs WHERE run_id='e2e' AND iteration=1 ORDER BY margin DESC, pair_id")[0]
    assert f"`{first_pair['prompt_id']}`" in page

    # What a user sees: `selfimprove show` prints the iteration table from the same file.
    from selfimprove.cli import main

    capsys.readouterr()
    assert main(["show", "e2e", "--set", f"data_dir={tmp_path / 'data'}", "--set", "project=t"]) == 0
    shown = capsys.readouterr().out
    assert "run e2e" in shown and "judge_auc" in shown and len(shown.splitlines()) >= 5
    where = ["--set", f"data_dir={tmp_path / 'data'}", "--set", "project=t"]
    assert main(["sql", "SELECT iteration, pairs FROM iteration_summary WHERE run_id = 'e2e' ORDER BY 1", *where]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "iteration\tpairs" and [line.split("\t")[0] for line in lines[1:]] == ["0", "1", "2"]
    assert main(["sql", "DELETE FROM runs", *where]) == 2  # read-only: records cannot be changed from here
    assert store.run("e2e") is not None
    assert main(["report", "e2e", "--out", str(tmp_path / "report"), *where]) == 0
    for name in ("accuracy", "rewards", "response_length", "pair_margins"):
        png = (tmp_path / "report" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "![accuracy](accuracy.png)" in (tmp_path / "report" / "summary.md").read_text()

    # Running a finished run again (what --resume does) adds nothing anywhere.
    before = {t: count(store, f"SELECT * FROM {t}", []) for t in ("generations", "judgments", "pairs", "evaluations")}
    selfimprove_run(config=cfg.to_dict(), run_id="e2e")
    assert {t: count(store, f"SELECT * FROM {t}", []) for t in before} == before
    assert len(client.search_model_versions("name = 't-e2e'")) == 3
    mlflow.set_tracking_uri(None)


def test_text_judge_stores_unparsed_judgments(tmp_path, tiny_model_dir):
    """The free-text judge on a random tiny model writes nonsense: every judgment is stored with its
    raw text and counted as unparsed, nothing crashes, and no pair is built from it."""
    from selfimprove.models.engines import SamplingSpec
    from selfimprove.tasks.build import build_pairs
    from selfimprove.tasks.generate import generate_samples
    from selfimprove.tasks.judge import judge_candidates
    from selfimprove.tasks.prepare import prepare_run

    cfg = config_from_dict(tiny_config_tree(tmp_path / "data", tiny_model_dir, judge={"mode": "text", "k": 2,
                                                                                       "max_tokens": 12}))
    store = store_for(cfg)
    prepare_run(store, cfg, "txt")
    generate_samples(store, cfg, "txt", 1, tiny_model_dir, store.prompts("txt", "train"),
                     SamplingSpec(n=3, temperature=1.0, max_tokens=8), "train")
    stats = judge_candidates(store, cfg, "txt", 1, tiny_model_dir)
    rows = store.query("SELECT * FROM judgments WHERE run_id = 'txt' AND iteration = 1")
    assert len(rows) == 6 * 3 * 2 and stats.judgments == len(rows)
    unparsed = [r for r in rows if not r["parsed"]]
    assert stats.parse_failure_rate == len(unparsed) / len(rows)
    assert all(r["score"] is None and r["raw_text"] is not None for r in unparsed)
    built = build_pairs(store, cfg, "txt", 1)
    assert built.pairs + built.dropped == 6
