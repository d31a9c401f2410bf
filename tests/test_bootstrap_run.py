"""The judge probe, its guard and the judge bootstrap inside real runs (Prefect, DuckDB, MLflow, vLLM)."""
import pytest
from mlflow import MlflowClient

from selfimprove.config import config_from_dict
from selfimprove.models.engines import vllm_available
from selfimprove.models.loading import model_hash
from selfimprove.tasks.common import store_for
from selfimprove.tasks.judge_probe import JudgeQualityError
from tests.conftest import tiny_config_tree

pytestmark = pytest.mark.skipif(not vllm_available(), reason="these runs use vLLM")


def test_the_guard_stops_a_run_whose_judge_is_at_chance(tmp_path, tiny_model_dir, prefect_harness):
    """A random tiny model judges at chance by construction, and almost never answers right, so its AUC
    cannot even be measured (an AUC over one right answer is noise): the run stops at iteration 1's
    probe, before anything trains on its self-judgments."""
    from selfimprove.flows.pipeline import selfimprove_run

    tree = tiny_config_tree(tmp_path / "data", tiny_model_dir, iterations=1)
    tree["judge"] = {"mode": "verify", "probe_size": 8, "min_probe_auc": 0.75, "on_low_auc": "stop"}
    cfg = config_from_dict(tree)
    with pytest.raises(JudgeQualityError, match="judge.min_probe_auc 0.75"):
        selfimprove_run(config=cfg.to_dict(), run_id="guarded")
    store = store_for(cfg)
    assert store.query("SELECT count(*) AS n FROM generations WHERE purpose = 'probe_sample'")[0]["n"] == 8 * 3
    assert not store.query("SELECT * FROM generations WHERE iteration = 1")  # iteration 1 never sampled
    assert not store.query("SELECT * FROM train_runs")
    stages = {(r["iteration"], r["stage"]) for r in store.query("SELECT iteration, stage FROM stage_ledger")}
    assert (0, "judge_probe") in stages and (1, "judge_probe") not in stages


@pytest.mark.slow
def test_bootstrap_teaches_the_seed_model_then_the_loop_starts_from_it(tmp_path, prefect_harness):
    """On the real seed model (it answers ~30% of these right, so both labels occur)."""
    from selfimprove.flows.pipeline import selfimprove_run

    tree = tiny_config_tree(tmp_path / "data", "embedded:smollm2-135m-instruct", iterations=1)
    tree["data"] = {**tree["data"], "train_size": 4, "eval_size": 12,
                    "task_args": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}}
    tree["generate"] = {"n": 4, "temperature": 0.8, "max_tokens": 48}
    tree["eval"] = {"k": 2, "max_tokens": 48}
    tree["judge"] = {"mode": "verify", "probe_size": 30}  # ~12% of sampled answers are right: enough for an AUC
    tree["bootstrap"] = {"enabled": True, "judge_prompts": 10, "samples": 4, "judge_examples": 12,
                         "generation_prompts": 6, "epochs": 1, "batch_size": 4}
    tree["train"] = {"batch_size": 4, "learning_rate": 1.0e-6, "epochs": 1}
    cfg = config_from_dict(tree)
    results = selfimprove_run(config=cfg.to_dict(), run_id="boot")
    store = store_for(cfg)
    boot = results[0]["bootstrap"]

    examples = store.bootstrap_examples("boot")
    judges = [e for e in examples if e.kind == "judge"]
    assert judges and sum(e.label for e in judges) * 2 == len(judges)  # balanced
    assert len(examples) - len(judges) >= 5  # the seed model's own greedy answers are mixed in
    splits = {p.prompt_id: p.split for p in store.prompts("boot", "seed")}
    assert {e.prompt_id for e in examples} <= set(splits)  # only seed-split prompts teach the judge
    assert boot.judge_examples == len(judges) and boot.judge_auc_before is not None
    values = {e.metric: e.value for e in store.evaluations("boot") if e.split == "bootstrap"}
    assert {"judge_auc_before", "judge_auc_after", "accuracy_before", "accuracy_after"} <= set(values)

    # The loop starts from the bootstrapped model, judges with it and probes it; it is its own MLflow version.
    assert {g.model_hash for g in store.generations("boot", 1, "train")} == {model_hash(boot.model_dir)}
    probe = {e.iteration for e in store.evaluations("boot") if e.split == "probe" and e.metric == "judge_auc"}
    assert probe == {0, 1}
    by_metric = {e.metric: e.value for e in store.evaluations("boot") if e.split == "probe" and e.iteration == 1}
    assert by_metric["judge_auc_low"] <= by_metric["judge_auc"] <= by_metric["judge_auc_high"]
    # Within-prompt accuracy, over the probe prompts with a right and a wrong answer (tasks/judge.py).
    assert by_metric["judge_pair_count"] >= 1 and 0.0 <= by_metric["judge_pair_accuracy"] <= 1.0
    own = {e.metric for e in store.evaluations("boot") if e.split == "train" and e.iteration == 1}
    assert "judge_pair_count" in own  # on its own candidates too (0 when none of a prompt's is right)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'data' / 'mlflow.db'}")
    name = client.search_registered_models()[0].name
    assert client.get_model_version_by_alias(name, "bootstrap").version != client.get_model_version_by_alias(
        name, "iter-1").version
