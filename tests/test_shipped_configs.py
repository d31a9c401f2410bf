"""Every config shipped in configs/ loads and validates (no model or data needed to validate)."""
from pathlib import Path

import pytest

from selfimprove.config import Config, load_config

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def test_configs_are_shipped():
    assert {p.name for p in CONFIGS} >= {"demo.yaml", "tiny_smoke.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path):
    config = load_config(path)
    assert isinstance(config, Config)
    config.validate()  # idempotent: what loaded is still valid when checked again
    assert load_config(None, base=config.to_dict()) == config
