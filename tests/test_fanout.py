"""Generation fan-out: engine.workers > 1 samples a stage's chunks on Dask worker processes
(prefect-dask's DaskTaskRunner), as Prefect task runs, and this process writes every row once."""
import pytest

from selfimprove.config import ConfigError, config_from_dict, load_config
from selfimprove.models import engines
from selfimprove.models.engines import SamplingSpec
from selfimprove.storage.db import Store
from selfimprove.storage.records import Prompt
from selfimprove.tasks.generate import generate_samples
from tests.conftest import tiny_config_tree

PROMPTS = [Prompt("fan", f"p{i}", "train", "jsonl", f"What is {i} + {i}?", str(2 * i), f"What is {i} + {i}?", "{}")
           for i in range(5)]


def test_generation_fans_out_to_dask_workers_as_prefect_tasks(tmp_path, tiny_model_dir, prefect_harness):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    tree = tiny_config_tree(tmp_path, tiny_model_dir,
                            engine={"name": "transformers", "workers": 2, "write_every": 2})
    cfg = config_from_dict(tree)
    store = Store(tmp_path / "fan.duckdb")
    engines.close_engine()
    summary = generate_samples(store, cfg, "fan", 1, tiny_model_dir, PROMPTS, SamplingSpec(3, 1.0, 1.0, 8), "train")

    assert engines._LIVE.engine is None  # nothing was sampled in this process
    rows = store.generations("fan", 1, "train")
    assert summary.samples == len(rows) == 15 and summary.engine == "transformers"
    assert sorted({(r.prompt_id, r.sample_index) for r in rows}) == [(p.prompt_id, k) for p in PROMPTS
                                                                      for k in range(3)]
    assert all(r.num_tokens > 0 and len(r.logprobs) == r.num_tokens for r in rows)
    # The workers drew what this process draws: samples are seeded by content, not by who sampled.
    engines.close_engine()
    alone = Store(tmp_path / "alone.duckdb")
    generate_samples(alone, config_from_dict({**tree, "engine": {**tree["engine"], "workers": 1}}), "fan", 1,
                     tiny_model_dir, PROMPTS, SamplingSpec(3, 1.0, 1.0, 8), "train")
    assert [r.token_ids for r in alone.generations("fan", 1, "train")] == [r.token_ids for r in rows]
    with get_client(sync_client=True) as client:
        chunk_names = TaskRunFilterName(like_="generate-train-1-chunk")
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=chunk_names))
    # 5 prompts in chunks of 2: three chunk tasks, each finished on a worker.
    assert sorted((r.name, r.state.type.value) for r in runs) == [
        (f"generate-train-1-chunk-{k}", "COMPLETED") for k in (1, 2, 3)]

    again = generate_samples(store, cfg, "fan", 1, tiny_model_dir, PROMPTS, SamplingSpec(3, 1.0, 1.0, 8), "train")
    assert again.resumed_prompts == 5 and len(store.generations("fan", 1, "train")) == 15


def test_workers_must_be_positive(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="engine.workers"):
        load_config(None, [f"data_dir={tmp_path}", f"model.path={tiny_model_dir}", "engine.workers=0"])
