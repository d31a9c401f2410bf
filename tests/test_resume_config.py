"""Which config may resume which run: the config as stored with the run, except `iterations` (may
grow) and `data_dir` (where the records are, however it is spelled)."""
import json
import os

import pytest

from selfimprove.config import ConfigError, config_from_dict
from selfimprove.flows.scheduled import pick_run_id
from selfimprove.serve import deployment_parameters
from selfimprove.tasks.common import store_for
from selfimprove.tasks.prepare import check_resume_config, prepare_run
from tests.conftest import tiny_config_tree


def test_serve_resumes_a_run_started_with_a_relative_data_dir(tmp_path, tiny_model_dir, monkeypatch):
    """Defect: `serve` stores data_dir absolute, the demo config has it relative; the unfinished run
    was found (the fingerprint leaves data_dir out) and then refused as 'a different config'."""
    monkeypatch.chdir(tmp_path)
    tree = tiny_config_tree("data", tiny_model_dir)  # relative, as configs/demo.yaml
    crashed = config_from_dict(tree)
    prepare_run(store_for(crashed), crashed, "crashed")  # a CLI run that stopped in iteration 1
    served = config_from_dict(deployment_parameters(crashed, resume_unfinished=True)["config"])
    assert os.path.isabs(served.data_dir)
    assert pick_run_id(served.to_dict(), resume_unfinished=True) == "crashed"
    prepare_run(store_for(served), served, "crashed")  # resuming it is allowed: nothing else changed
    assert len(store_for(served).runs()) == 1


def test_resume_refuses_a_config_that_computes_something_else(tmp_path, tiny_model_dir):
    cfg = config_from_dict(tiny_config_tree(tmp_path / "data", tiny_model_dir))
    prepare_run(store_for(cfg), cfg, "r")
    longer = config_from_dict(tiny_config_tree(tmp_path / "data", tiny_model_dir, iterations=5))
    prepare_run(store_for(longer), longer, "r")  # more iterations: fine
    other = config_from_dict(tiny_config_tree(tmp_path / "data", tiny_model_dir, seed=7))
    with pytest.raises(ConfigError, match=r"differs in: seed"):
        prepare_run(store_for(other), other, "r")


def test_a_setting_added_since_the_run_started_reads_as_its_default(tmp_path, tiny_model_dir):
    cfg = config_from_dict(tiny_config_tree(tmp_path / "data", tiny_model_dir))
    before = cfg.to_dict()
    del before["model"]["device"]  # stored by a version that had no model.device
    check_resume_config(json.dumps(before), cfg, "r")
    with pytest.raises(ConfigError, match=r"differs in: model"):  # a setting this version does not know
        check_resume_config(json.dumps({**before, "model": {**before["model"], "gone": 1}}), cfg, "r")
    with pytest.raises(ConfigError, match=r"differs in: model"):
        check_resume_config(json.dumps({**before, "model": {**before["model"], "device": "cpu"}}), cfg, "r")
