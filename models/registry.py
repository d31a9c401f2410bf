"""MLflow: one parent run per pipeline run, a nested run per iteration, one registered model
per run lineage with a version and an alias (`iter-K`) per iteration.

All calls go through MlflowClient with explicit run ids (no global active run), so a resumed
pipeline re-attaches to the runs it created before the crash. Metrics are `stage/name` with
step=iteration, logged on both the parent (for side-by-side charts) and the iteration's run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def tracking_uri(cfg) -> str:
    return cfg.mlflow.tracking_uri or f"sqlite:///{Path(cfg.data_dir).resolve() / 'mlflow.db'}"


def run_charts_url(ui_base: str, experiment_id: str, mlflow_run_id: str) -> str:
    """The MLflow UI page charting a run's metrics (MLflow 3.17's run page, "Model metrics" tab; the
    experiment page itself may open on the GenAI overview with '0 traces')."""
    return f"{ui_base.rstrip('/')}/#/experiments/{experiment_id}/runs/{mlflow_run_id}/model-metrics"


def _client(cfg):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri(cfg))
    return MlflowClient(tracking_uri(cfg))


def experiment_name(cfg) -> str:
    return cfg.mlflow.experiment or f"{cfg.project}-{cfg.method.name}"


def registered_model_name(cfg, run_id: str) -> str:
    return cfg.mlflow.registered_model or f"{cfg.project}-{run_id}"


def _experiment_id(client, cfg) -> str:
    name = experiment_name(cfg)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    # Without an explicit artifact location, SQLite-backed experiments write to ./mlruns.
    artifacts = (Path(cfg.data_dir).resolve() / "mlartifacts").as_uri()
    # The kind makes MLflow 3's UI open the experiment on its training-runs view, not the GenAI one.
    return client.create_experiment(name, artifact_location=artifacts,
                                    tags={"mlflow.experimentKind": "custom_model_development"})


def flat_params(tree: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> {"train.beta": "0.1", ...}; the tracking URI is left out (may hold secrets)."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if name == "mlflow.tracking_uri":
            continue
        if isinstance(value, dict) and value:
            out.update(flat_params(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return out


def start_parent_run(cfg, run_id: str, existing: str | None, tags: dict) -> str:
    from mlflow.entities import Param

    client = _client(cfg)
    if existing:
        return existing
    run = client.create_run(_experiment_id(client, cfg), run_name=run_id, tags={"selfimprove.run_id": run_id, **tags})
    params = [Param(k, v[:6000]) for k, v in flat_params(cfg.to_dict()).items()]
    for start in range(0, len(params), 100):
        client.log_batch(run.info.run_id, params=params[start:start + 100])
    return run.info.run_id


def start_iteration_run(cfg, parent_id: str, run_id: str, iteration: int, existing: str | None,
                        name: str | None = None) -> str:
    """A child of the run's MLflow run for one iteration (or a named step of it, e.g. "bootstrap")."""
    client = _client(cfg)
    if existing:
        return existing
    parent = client.get_run(parent_id)
    run = client.create_run(parent.info.experiment_id, run_name=name or f"iteration-{iteration}",
                            tags={"mlflow.parentRunId": parent_id, "selfimprove.run_id": run_id,
                                  "selfimprove.iteration": str(iteration)})
    return run.info.run_id


def log_metrics(cfg, run_ids: list[str], metrics: dict, step: int) -> None:
    """Numeric entries of `metrics` (names like "eval/accuracy") on each run, at step=iteration."""
    import time

    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    batch = [Metric(k, float(v), stamp, step) for k, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
    client = _client(cfg)
    for rid in run_ids:
        client.log_batch(rid, metrics=batch)


def finish_run(cfg, mlflow_run_id: str, status: str = "FINISHED") -> None:
    _client(cfg).set_terminated(mlflow_run_id, status)


def register_model(cfg, iteration_run_id: str, run_id: str, iteration: int, model_dir: str | Path,
                   alias: str | None = None) -> str:
    """Log model_dir as a transformers model on the iteration run and register it as a new version
    of the run's registered model, aliased `iter-<iteration>` (or `alias`). Idempotent on resume."""
    import mlflow
    import transformers

    client = _client(cfg)
    name = registered_model_name(cfg, run_id)
    alias = alias or f"iter-{iteration}"
    try:
        return client.get_model_version_by_alias(name, alias).version
    except mlflow.exceptions.MlflowException:
        pass
    with mlflow.start_run(run_id=iteration_run_id):
        info = mlflow.transformers.log_model(
            transformers_model=str(model_dir), name="model", task="text-generation", registered_model_name=name,
            # Explicit: inference would import every optional vision/audio package.
            pip_requirements=[f"transformers=={transformers.__version__}", "torch", "safetensors"])
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "selfimprove.iteration", str(iteration))
    return version


def mark_gate(cfg, run_id: str, iteration: int, iteration_run_id: str, accepted: bool) -> None:
    """Tag the iteration's run accepted/rejected; move the `champion` alias when accepted."""
    client = _client(cfg)
    client.set_tag(iteration_run_id, "selfimprove.accepted", str(accepted).lower())
    if accepted:
        name = registered_model_name(cfg, run_id)
        version = client.get_model_version_by_alias(name, f"iter-{iteration}").version
        client.set_registered_model_alias(name, "champion", version)


def log_report(cfg, mlflow_run_id: str, report_dir: str | Path) -> str:
    """Upload the report folder (plots + summary.md) to the run's artifacts under `report/`."""
    client = _client(cfg)
    client.log_artifacts(mlflow_run_id, str(report_dir), artifact_path="report")
    return f"{tracking_uri(cfg)} run {mlflow_run_id}"
