import os
from pathlib import Path

import pytest

from selfimprove.env import apply_defaults  # noqa: E402

apply_defaults()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from selfimprove.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def tiny_config_tree(data_dir: Path, model_dir: Path, **over) -> dict:
    """A whole-loop config on the tiny model: seconds per iteration."""
    tree = {
        "project": "t", "data_dir": str(data_dir), "iterations": 2, "seed": 0,
        "model": {"path": str(model_dir), "dtype": "float32"},
        "engine": {"name": os.environ.get("SELFIMPROVE_TEST_ENGINE", "vllm"), "max_model_len": 1024},
        "data": {"source": "reasoning_gym", "task": "basic_arithmetic", "train_size": 6, "eval_size": 6,
                 "task_args": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}},
        "generate": {"n": 3, "temperature": 1.0, "max_tokens": 10},
        "judge": {"mode": "logprob"},
        "pairs": {"min_margin": 0.0},
        "train": {"batch_size": 3, "learning_rate": 1.0e-3, "epochs": 1},
        "eval": {"k": 2, "max_tokens": 10},
    }
    for key, value in over.items():
        tree[key] = value
    return tree
