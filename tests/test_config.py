"""Config loading: defaults, YAML, overrides, and one clear error per kind of mistake."""
import pytest

from models.loading import ModelPathError, resolve_model
from selfimprove.config import ConfigError, config_from_dict, load_config


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_yaml_and_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "iterations: 3\ntrain: {beta: 0.2}\n"), ["train.lora.enabled=true", "generate.n=6"])
    assert cfg.iterations == 3 and cfg.train.beta == 0.2 and cfg.train.lora.enabled and cfg.generate.n == 6
    assert cfg.judge.mode == "logprob"  # untouched default
    assert config_from_dict(cfg.to_dict()) == cfg


def test_unknown_key_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.betta'"):
        load_config(write(tmp_path, "train: {betta: 0.2}\n"))


def test_wrong_type_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"generate\.n: expected an integer"):
        load_config(write(tmp_path, "generate: {n: many}\n"))
    with pytest.raises(ConfigError, match=r"train\.lora\.enabled: expected true/false"):
        load_config(None, ["train.lora.enabled=3"])


def test_bad_choice_and_bad_value():
    with pytest.raises(ConfigError, match=r"judge\.mode: 'vibes' is not one of"):
        load_config(None, ["judge.mode=vibes"])
    with pytest.raises(ConfigError, match=r"generate\.n: .*>= 2"):
        load_config(None, ["generate.n=1"])


def test_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"data\.path: file not found"):
        load_config(None, ["data.source=jsonl", f"data.path={tmp_path / 'missing.jsonl'}"])


def test_model_dir_without_weights(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(ModelPathError, match="has no weights"):
        resolve_model(str(tmp_path / "m"), tmp_path)
    with pytest.raises(ModelPathError, match="has no config.json"):
        resolve_model(str(tmp_path), tmp_path)
    with pytest.raises(ModelPathError, match="HF_HUB_OFFLINE"):
        resolve_model("someone/some-model", tmp_path)


def test_cli_reports_config_error_without_traceback(tmp_path, capsys):
    from selfimprove.cli import main

    assert main(["run", str(write(tmp_path, "model: {pth: x}\n"))]) == 2
    assert "unknown config key 'model.pth'" in capsys.readouterr().err
