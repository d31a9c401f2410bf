"""Prefect flows: a run is a baseline evaluation (with the judge probe and the judge bootstrap when
configured) and N iterations; an iteration runs its method's stages in order (Self-Rewarding:
generate -> judge -> score -> build -> train -> evaluate), then tracks the result in MLflow.
Each stage is a task over a plain function; the stage ledger in DuckDB makes a re-run skip what
finished, so resuming a crashed run is running it again. Stages pass ids and paths, never models,
so every task input stays small.
"""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from selfimprove.config import config_from_dict
from selfimprove.methods import StageContext, get_method
from selfimprove.models import registry
from selfimprove.storage.records import Iteration
from selfimprove.tasks import artifacts
from selfimprove.tasks.bootstrap import run_bootstrap
from selfimprove.tasks.common import run_dir, run_stage, store_for
from selfimprove.tasks.evaluate import evaluate_model
from selfimprove.tasks.gate import gate_iteration
from selfimprove.tasks.judge_probe import judge_probe, probes_judge
from selfimprove.tasks.prepare import prepare_run
from selfimprove.tasks.report import write_report
from selfimprove.tasks.results import (
    BootstrapResult,
    EvalResult,
    GateResult,
    JudgeProbeResult,
    PrepareResult,
    StageResult,
    TrackResult,
)


@task(name="prepare-run", cache_policy=NO_CACHE)
def prepare_task(config: dict, run_id: str) -> PrepareResult:
    cfg = config_from_dict(config)
    store = store_for(cfg)
    return run_stage(store, run_id, 0, "prepare", lambda: prepare_run(store, cfg, run_id))


@task(name="stage", task_run_name="{stage}-{iteration}", cache_policy=NO_CACHE)
def stage_task(config: dict, run_id: str, iteration: int, model_dir: str, stage: str) -> StageResult:
    """One stage of one iteration, as the configured method defines it."""
    cfg = config_from_dict(config)
    store = store_for(cfg)
    ctx = StageContext(store, cfg, run_id, iteration, model_dir)
    return run_stage(store, run_id, iteration, stage, lambda: getattr(get_method(cfg.method.name), stage)(ctx))


@task(name="judge-probe-seed", cache_policy=NO_CACHE)
def seed_probe_task(config: dict, run_id: str, model_dir: str) -> JudgeProbeResult:
    """The seed model as a judge, on the fixed labelled probe (no guard: the bootstrap may come next)."""
    cfg = config_from_dict(config)
    store = store_for(cfg)
    return run_stage(store, run_id, 0, "judge_probe",
                     lambda: judge_probe(store, cfg, run_id, 0, model_dir, guard=False))


@task(name="bootstrap", cache_policy=NO_CACHE)
def bootstrap_task(config: dict, run_id: str) -> BootstrapResult:
    """Teach the seed model to judge (tasks/bootstrap.py); register the result as its own model version."""
    cfg = config_from_dict(config)
    store = store_for(cfg)
    result = run_stage(store, run_id, 0, "bootstrap", lambda: run_bootstrap(store, cfg, run_id))

    def track():
        parent = store.run(run_id).mlflow_run_id
        child = registry.start_iteration_run(cfg, parent, run_id, 0, None, name="bootstrap")
        registry.log_metrics(cfg, [parent, child], {f"bootstrap/{k}": v for k, v in result.metrics().items()}, step=0)
        version = registry.register_model(cfg, child, run_id, 0, result.model_dir, alias="bootstrap")
        registry.finish_run(cfg, child)
        return TrackResult(mlflow_run_id=child, model_version=version)
    run_stage(store, run_id, 0, "bootstrap_track", track)
    return result


@task(name="evaluate-seed", cache_policy=NO_CACHE)
def evaluate_seed_task(config: dict, run_id: str, model_dir: str) -> EvalResult:
    cfg = config_from_dict(config)
    store = store_for(cfg)
    return run_stage(store, run_id, 0, "evaluate", lambda: evaluate_model(store, cfg, run_id, 0, model_dir))


METRIC_PREFIX = {"evaluate": "eval", "build": "pairs", "score": "reward"}  # MLflow names: eval/accuracy_greedy


@task(name="track-mlflow", task_run_name="track-{iteration}", cache_policy=NO_CACHE)
def track_task(config: dict, run_id: str, iteration: int, model_dir: str,
               stages: dict[str, StageResult]) -> TrackResult:
    """Metrics (stage/name, step=iteration) on the parent and iteration runs; register the model."""
    cfg = config_from_dict(config)
    store = store_for(cfg)

    def work():
        parent = store.run(run_id).mlflow_run_id
        row = store.iteration(run_id, iteration)
        child = registry.start_iteration_run(cfg, parent, run_id, iteration, row and row.mlflow_run_id)
        store.set_iteration_mlflow_run(run_id, iteration, child)
        metrics = {f"{METRIC_PREFIX.get(stage, stage)}/{name}": value
                   for stage, result in stages.items() for name, value in result.metrics().items()}
        registry.log_metrics(cfg, [parent, child], metrics, step=iteration)
        version = registry.register_model(cfg, child, run_id, iteration, model_dir)
        registry.finish_run(cfg, child)
        return TrackResult(mlflow_run_id=child, model_version=version)
    return run_stage(store, run_id, iteration, "track", work)


@task(name="gate", task_run_name="gate-{iteration}", cache_policy=NO_CACHE)
def gate_task(config: dict, run_id: str, iteration: int) -> GateResult:
    """Accept or reject the iteration's model (champion gating); say where the next one starts."""
    cfg = config_from_dict(config)
    store = store_for(cfg)

    def work():
        decision = gate_iteration(store, cfg, run_id, iteration)
        child = store.iteration(run_id, iteration).mlflow_run_id
        registry.mark_gate(cfg, run_id, iteration, child, decision.accepted)
        registry.log_metrics(cfg, [store.run(run_id).mlflow_run_id], {
            "gate/accepted": float(decision.accepted), "gate/champion_iteration": decision.champion_iteration,
            "gate/collapsed": float(decision.collapsed)},
            step=iteration)
        return decision
    return run_stage(store, run_id, iteration, "gate", work)


@task(name="publish-artifacts", task_run_name="artifacts-{iteration}", cache_policy=NO_CACHE)
def artifacts_task(config: dict, run_id: str, iteration: int) -> list[str]:
    """The iteration's metrics table and samples page in the Prefect UI (a view: re-made on resume)."""
    cfg = config_from_dict(config)
    return artifacts.publish_iteration(store_for(cfg), run_id, iteration)


@task(name="report", cache_policy=NO_CACHE)
def report_task(config: dict, run_id: str) -> list[str]:
    """Plots + summary.md under <data_dir>/runs/RUN_ID/report, logged to MLflow and shown in Prefect."""
    cfg = config_from_dict(config)
    store = store_for(cfg)
    out = run_dir(cfg, run_id) / "report"
    files = write_report(store, run_id, out)
    where = registry.log_report(cfg, store.run(run_id).mlflow_run_id, out)
    artifacts.publish_report(store, run_id, files, where)
    return [str(f) for f in files]


# Named after the run: in Prefect's run list two runs' iterations can be told apart.
@flow(name="iteration", flow_run_name="{run_id}-iteration-{iteration}", log_prints=False)
def iteration_flow(config: dict, run_id: str, iteration: int, model_dir: str) -> dict[str, StageResult]:
    """One iteration: its method's stages in order, then tracking and gating. Returns each stage's result."""
    cfg = config_from_dict(config)
    store = store_for(cfg)
    store.add([Iteration(run_id, iteration, None, None)])
    stages: dict[str, StageResult] = {}
    for stage in get_method(cfg.method.name).stages(cfg):
        stages[stage] = stage_task(config, run_id, iteration, model_dir, stage)
    trained = stages["train"]
    store.set_iteration_model(run_id, iteration, trained.model_dir, trained.model_hash)
    stages["track"] = track_task(config, run_id, iteration, trained.model_dir, stages)
    stages["gate"] = gate_task(config, run_id, iteration)
    artifacts_task(config, run_id, iteration)
    return stages


@flow(name="selfimprove-run", flow_run_name="{run_id}", log_prints=False)
def selfimprove_run(config: dict, run_id: str) -> list[dict[str, StageResult]]:
    """The whole run: baseline evaluation of the seed model (iteration 0), then N iterations."""
    from prefect.runtime import flow_run

    cfg = config_from_dict(config)
    store = store_for(cfg)
    prepared = prepare_task(config, run_id)
    row = store.run(run_id)
    parent = registry.start_parent_run(cfg, run_id, row.mlflow_run_id, tags={
        "prefect.flow_run_id": str(flow_run.id), "selfimprove.duckdb": str(store.path.resolve())})
    store.update_run(run_id, mlflow_run_id=parent, prefect_flow_run_id=str(flow_run.id))
    model_dir = prepared.seed_dir
    seed: dict[str, StageResult] = {"evaluate": evaluate_seed_task(config, run_id, model_dir)}
    if probes_judge(cfg):
        seed["judge_probe"] = seed_probe_task(config, run_id, model_dir)
    track_task(config, run_id, 0, model_dir, seed)
    gate_task(config, run_id, 0)  # the seed is the first champion
    if cfg.bootstrap.enabled:  # the loop starts from the model taught to judge
        seed["bootstrap"] = bootstrap_task(config, run_id)
        model_dir = seed["bootstrap"].model_dir
    start_dir = model_dir
    artifacts_task(config, run_id, 0)
    results: list[dict[str, StageResult]] = [seed]
    try:
        for iteration in range(1, cfg.iterations + 1):
            result = iteration_flow(config, run_id, iteration, model_dir)
            results.append(result)
            gate = result["gate"]
            model_dir = start_dir if gate.champion_iteration == 0 else gate.model_dir
    except Exception:
        registry.finish_run(cfg, parent, "FAILED")  # a resume re-attaches to this run
        raise
    report_task(config, run_id)
    registry.finish_run(cfg, parent)
    return results
