"""Generation fan-out over a Prefect task runner: engine.workers > 1 runs a generation stage's
chunks as Prefect tasks on Dask workers (prefect-dask's DaskTaskRunner), each worker process
holding its own engine, e.g. one per GPU, or workers on other machines via engine.dask_address.

Only sampling moves: prompts are tokenized here, the workers return samples, and this process
writes the rows (DuckDB takes one writing process per file), chunk by chunk in submission order,
so a crash loses at most the chunks not yet written and resume works as without workers.
Each stage starts (and stops) its own local cluster, so every worker loads the model once per
stage; chunks carry their prompts' content seeds, so workers draw what one process would.
"""
from __future__ import annotations

from collections.abc import Iterator

from prefect import task
from prefect.cache_policies import NO_CACHE

from selfimprove.models.engines import Sample, SamplingSpec


@task(name="generate-chunk", task_run_name="{label}", cache_policy=NO_CACHE)
def generate_chunk(config: dict, model_dir: str, prompt_ids: list[list[int]], spec: SamplingSpec,
                   seeds: list[int], label: str) -> list[list[Sample]]:
    """On a worker: sample with that process's engine (loaded on its first chunk, then reused)."""
    from selfimprove.config import config_from_dict
    from selfimprove.env import apply_defaults
    from selfimprove.tasks.common import engine_for

    apply_defaults()
    return engine_for(config_from_dict(config), model_dir).generate(prompt_ids, spec, seeds)


def task_runner(engine_cfg):
    """A Dask cluster of engine.workers single-threaded processes on loopback, or the given scheduler."""
    from prefect_dask import DaskTaskRunner

    if engine_cfg.dask_address:
        return DaskTaskRunner(address=engine_cfg.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": engine_cfg.workers, "threads_per_worker": 1,
                                          "processes": True, "host": "127.0.0.1", "dashboard_address": None})


def generate_chunks(cfg, model_dir, jobs: list[tuple[list[list[int]], list[int]]], spec: SamplingSpec,
                    label: str) -> Iterator[list]:
    """Submit every (prompt ids, seeds) job at once; yield their outputs in job order."""
    if not jobs:
        return
    with task_runner(cfg.engine) as runner:
        futures = [runner.submit(generate_chunk, parameters={
            "config": cfg.to_dict(), "model_dir": str(model_dir), "prompt_ids": ids, "spec": spec, "seeds": seeds,
            "label": f"{label}-chunk-{index}"}) for index, (ids, seeds) in enumerate(jobs, start=1)]
        for future in futures:
            yield future.result()
