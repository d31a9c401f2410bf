"""Prefect flows: a run is N iterations; an iteration is generate -> judge -> build pairs -> train
-> evaluate -> track. Each stage is a task over a plain function in tasks/; the stage ledger in
DuckDB makes a re-run skip what finished, so resuming a crashed run is running it again.
Stages pass ids and paths, never models, so every task input stays small.
"""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from models import registry
from models.engines import SamplingSpec
from selfimprove.config import config_from_dict
from storage.db import now
from tasks.build import build_pairs
from tasks.common import run_dir, run_stage, store_for
from tasks.evaluate import evaluate_model
from tasks.generate import generate_samples
from tasks.judge import judge_candidates
from tasks.prepare import prepare_run
from tasks.train import train_dpo


def _stage(config: dict, run_id: str, iteration: int, stage: str, work) -> dict:
    cfg = config_from_dict(config)
    store = store_for(cfg)
    return run_stage(store, run_id, iteration, stage, lambda: work(store, cfg))


@task(name="prepare-run", cache_policy=NO_CACHE)
def prepare_task(config: dict, run_id: str) -> dict:
    return _stage(config, run_id, 0, "prepare", lambda store, cfg: prepare_run(store, cfg, run_id))


@task(name="generate-candidates", cache_policy=NO_CACHE)
def generate_task(config: dict, run_id: str, iteration: int, model_dir: str) -> dict:
    def work(store, cfg):
        g = cfg.generate
        spec = SamplingSpec(g.n, g.temperature, g.top_p, g.max_tokens, cfg.seed)
        return generate_samples(store, cfg, run_id, iteration, model_dir, store.prompts(run_id, "train"), spec, "train")
    return _stage(config, run_id, iteration, "generate", work)


@task(name="self-judge", cache_policy=NO_CACHE)
def judge_task(config: dict, run_id: str, iteration: int, model_dir: str) -> dict:
    return _stage(config, run_id, iteration, "judge",
                  lambda store, cfg: judge_candidates(store, cfg, run_id, iteration, model_dir))


@task(name="build-pairs", cache_policy=NO_CACHE)
def build_task(config: dict, run_id: str, iteration: int) -> dict:
    return _stage(config, run_id, iteration, "build", lambda store, cfg: build_pairs(store, cfg, run_id, iteration))


@task(name="train-dpo", cache_policy=NO_CACHE)
def train_task(config: dict, run_id: str, iteration: int, model_dir: str) -> dict:
    def work(store, cfg):
        out = run_dir(cfg, run_id) / f"iter-{iteration}" / "model"
        return train_dpo(store, cfg, run_id, iteration, model_dir, out)
    return _stage(config, run_id, iteration, "train", work)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(config: dict, run_id: str, iteration: int, model_dir: str) -> dict:
    return _stage(config, run_id, iteration, "evaluate",
                  lambda store, cfg: evaluate_model(store, cfg, run_id, iteration, model_dir))


@task(name="track-mlflow", cache_policy=NO_CACHE)
def track_task(config: dict, run_id: str, iteration: int, model_dir: str, stages: dict) -> dict:
    """Metrics (stage/name, step=iteration) on the parent and iteration runs; register the model."""
    def work(store, cfg):
        parent = store.run(run_id)["mlflow_run_id"]
        row = store.iteration(run_id, iteration)
        child = registry.start_iteration_run(cfg, parent, run_id, iteration, row and row["mlflow_run_id"])
        store.update_iteration(run_id, iteration, mlflow_run_id=child)
        metrics = {f"{stage}/{name}": value for stage, summary in stages.items() for name, value in summary.items()}
        registry.log_metrics(cfg, [parent, child], metrics, step=iteration)
        version = registry.register_model(cfg, child, run_id, iteration, model_dir)
        registry.finish_run(cfg, child)
        return {"mlflow_run_id": child, "model_version": version}
    return _stage(config, run_id, iteration, "track", work)


@flow(name="iteration", flow_run_name="iteration-{iteration}", log_prints=False)
def iteration_flow(config: dict, run_id: str, iteration: int, model_dir: str) -> dict:
    cfg = config_from_dict(config)
    store = store_for(cfg)
    store.append("iterations", [{"run_id": run_id, "iteration": iteration, "model_path": None, "model_hash": None,
                                 "started_at": now()}])
    generated = generate_task(config, run_id, iteration, model_dir)
    judged = judge_task(config, run_id, iteration, model_dir)
    built = build_task(config, run_id, iteration)
    trained = train_task(config, run_id, iteration, model_dir)
    store.update_iteration(run_id, iteration, model_path=trained["model_dir"], model_hash=trained["model_hash"])
    evaluated = evaluate_task(config, run_id, iteration, trained["model_dir"])
    stages = {"generate": generated, "judge": judged, "pairs": built, "train": trained, "eval": evaluated}
    tracked = track_task(config, run_id, iteration, trained["model_dir"], stages)
    return {**stages, "track": tracked, "model_dir": trained["model_dir"]}


@flow(name="selfimprove-run", flow_run_name="{run_id}", log_prints=False)
def selfimprove_run(config: dict, run_id: str) -> list[dict]:
    """The whole run: baseline evaluation of the seed model (iteration 0), then N iterations."""
    from prefect.runtime import flow_run

    cfg = config_from_dict(config)
    store = store_for(cfg)
    prepared = prepare_task(config, run_id)
    row = store.run(run_id)
    parent = registry.start_parent_run(cfg, run_id, row["mlflow_run_id"], tags={
        "prefect.flow_run_id": str(flow_run.id), "selfimprove.duckdb": str(store.path.resolve())})
    store.update_run(run_id, mlflow_run_id=parent, prefect_flow_run_id=str(flow_run.id))
    model_dir = prepared["seed_dir"]
    baseline = evaluate_task(config, run_id, 0, model_dir)
    track_task(config, run_id, 0, model_dir, {"eval": baseline})
    results = [{"iteration": 0, "eval": baseline}]
    try:
        for iteration in range(1, cfg.iterations + 1):
            result = iteration_flow(config, run_id, iteration, model_dir)
            results.append({"iteration": iteration, **result})
            model_dir = result["model_dir"]
    except Exception:
        registry.finish_run(cfg, parent, "FAILED")  # a resume re-attaches to this run
        raise
    registry.finish_run(cfg, parent)
    return results
