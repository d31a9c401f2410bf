"""Training through a real `accelerate launch` child (one CPU process, tiny model), and its config rules."""
import logging
import math

import pytest
import torch
from safetensors import safe_open

from selfimprove.config import ConfigError, config_from_dict, load_config
from selfimprove.configs import shipped
from selfimprove.models.loading import load_model
from selfimprove.tasks.train import run_dpo, run_sft
from selfimprove.tasks.train_launch import TrainingLaunchError
from tests.conftest import tiny_config_tree
from tests.test_train import EXAMPLES


def launch_config(tmp_path, model_dir):
    tree = tiny_config_tree(tmp_path, model_dir)
    # Named explicitly so the test runs the CPU config on any machine (the default picks by CUDA).
    tree["train"].update(launcher="accelerate", num_processes=1,
                         accelerate_config=str(shipped("accelerate/cpu_single.yaml")))
    return config_from_dict(tree)


@pytest.mark.parametrize("algorithm", ["dpo", "sft"])
def test_training_through_accelerate_launch(tmp_path, tiny_model_dir, caplog, algorithm):
    out = tmp_path / algorithm
    with caplog.at_level(logging.INFO, logger="selfimprove"):
        stats = (run_dpo if algorithm == "dpo" else run_sft)(launch_config(tmp_path, tiny_model_dir), tiny_model_dir,
                                                            out, EXAMPLES)
    # Stats come back from the child's stats.json: 6 examples, batch 3, one epoch.
    assert stats["steps"] == 2 and stats["examples"] == 6
    assert math.isfinite(stats["loss"]) and stats["loss"] > 0 and stats["params_changed_fraction"] > 0.5
    assert stats["launch_seconds"] >= stats["seconds"] > 0
    # The child really ran under accelerate and its output reached our log.
    child_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[train child]")]
    assert any("'loss'" in line for line in child_lines)
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        assert list(fh.keys())
    seed = dict(load_model(tiny_model_dir).named_parameters())
    trained = dict(load_model(out).named_parameters())
    assert seed.keys() == trained.keys()
    assert any(not torch.equal(seed[n], trained[n]) for n in seed)
    # The job directory is cleaned up on success; no half-saved model is left beside the output.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(algorithm)) == [algorithm]


def test_failing_child_names_the_problem(tmp_path, tiny_model_dir):
    missing = tmp_path / "no-such-model"
    with pytest.raises(TrainingLaunchError) as err:
        run_dpo(launch_config(tmp_path, tiny_model_dir), missing, tmp_path / "out", EXAMPLES)
    message = str(err.value)
    assert "exited with code 1" in message
    assert f"base model directory {missing} does not exist or has no config.json" in message
    job = tmp_path / "out.launch"
    assert f"job files kept in {job}" in message and (job / "spec.json").is_file() and (job / "output.log").is_file()
    assert not (tmp_path / "out").exists()


def test_launcher_config_rules(tmp_path):
    # Documented choice: more than one process without the accelerate launcher is an error, not a
    # silent switch to accelerate.
    with pytest.raises(ConfigError, match=r"train\.num_processes: 2 processes need train\.launcher: accelerate"):
        load_config(None, ["train.num_processes=2"])
    assert load_config(None, ["train.num_processes=2", "train.launcher=accelerate"]).train.num_processes == 2
    with pytest.raises(ConfigError, match=r"train\.launcher: 'slurm' is not one of \['accelerate', 'inprocess'\]"):
        load_config(None, ["train.launcher=slurm"])
    with pytest.raises(ConfigError, match=r"train\.num_processes: must be >= 1"):
        load_config(None, ["train.num_processes=0"])
    with pytest.raises(ConfigError, match=r"train\.launcher: grpo trains in-process only"):
        load_config(None, ["train.algorithm=grpo", "train.launcher=accelerate"])
    with pytest.raises(ConfigError, match=r"train\.accelerate_config: file not found: .*nope\.yaml"):
        load_config(None, ["train.launcher=accelerate", f"train.accelerate_config={tmp_path / 'nope.yaml'}"])


@pytest.mark.parametrize("name, kind", [("cpu_single", "NO"), ("ddp", "MULTI_GPU"), ("deepspeed_zero2", "DEEPSPEED"),
                                        ("fsdp", "FSDP")])
def test_shipped_accelerate_configs_parse(name, kind):
    """accelerate's own loader reads every shipped config (only cpu_single is launched here: no GPU)."""
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(shipped(f"accelerate/{name}.yaml")))
    assert loaded.distributed_type == kind
    assert loaded.mixed_precision == ("no" if name == "cpu_single" else "bf16")
