"""Champion gating on a real tiny run: a model that does not beat the champion is rejected, the
next iteration starts from the champion, and the MLflow `champion` alias does not move."""
import pytest
from mlflow import MlflowClient

from selfimprove.config import config_from_dict
from selfimprove.models.engines import vllm_available
from selfimprove.models.loading import model_hash
from selfimprove.tasks.common import store_for
from selfimprove.tasks.gate import accept
from tests.conftest import tiny_config_tree


def test_accept_rule():
    assert accept(0.40, 0.30, 0.05) and not accept(0.34, 0.30, 0.05) and not accept(0.30, 0.30, 0.0)
    assert accept(0.0, None, 0.0) and not accept(None, 0.1, 0.0)


@pytest.mark.skipif(not vllm_available(), reason="runs the real loop with vLLM")
def test_rejected_iteration_restarts_from_champion(tmp_path, tiny_model_dir, prefect_harness):
    from selfimprove.flows.pipeline import selfimprove_run

    # An accuracy can never beat the seed's by more than 1.0: both iterations are rejected.
    tree = tiny_config_tree(tmp_path / "data", tiny_model_dir, gate={"enabled": True, "margin": 1.0})
    cfg = config_from_dict(tree)
    results = selfimprove_run(config=cfg.to_dict(), run_id="g")
    store = store_for(cfg)
    accepted = {r["iteration"]: r["accepted"] for r in store.query("SELECT iteration, accepted FROM iterations", [])}
    assert accepted == {0: True, 1: False, 2: False}
    seed = model_hash(tiny_model_dir)
    # Iteration 2 sampled from the champion (the seed), not from iteration 1's rejected model.
    assert {g.model_hash for g in store.generations("g", 2, "train")} == {seed}
    assert results[-1]["gate"].model_dir == str(tiny_model_dir)
    client = MlflowClient(f"sqlite:///{tmp_path / 'data' / 'mlflow.db'}")
    assert client.get_model_version_by_alias("t-g", "champion").tags["selfimprove.iteration"] == "0"
    child = store.iteration("g", 1).mlflow_run_id
    assert client.get_run(child).data.tags["selfimprove.accepted"] == "false"
