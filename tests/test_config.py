"""Config loading: defaults, YAML, overrides, and one clear error per kind of mistake."""
import typing

import pytest

from selfimprove.config import (
    Config,
    ConfigError,
    DataConfig,
    GenerateConfig,
    JudgeConfig,
    MethodConfig,
    RewardConfig,
    SignalConfig,
    TrainConfig,
    config_from_dict,
    load_config,
)
from selfimprove.models.loading import ModelPathError, resolve_model


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_yaml_and_overrides(tmp_path):
    overrides = ["train.lora.enabled=true", "generate.n=6"]
    cfg = load_config(write(tmp_path, "iterations: 3\ntrain: {beta: 0.2}\n"), overrides)
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


def test_choices_are_literal_annotations():
    assert typing.get_args(typing.get_type_hints(TrainConfig)["launcher"]) == ("inprocess", "accelerate")
    assert typing.get_args(typing.get_type_hints(SignalConfig)["name"])[0] == "judge"


def test_bad_choice_inside_a_list_names_the_item():
    with pytest.raises(ConfigError, match=r"^reward\.signals\[1\]\.name: 'vibes' is not one of \['borda', "):
        load_config(None, ["reward.signals=[{name: judge}, {name: vibes, weight: 0.5}]"])
    with pytest.raises(ConfigError, match=r"^reward\.signals\[0\]\.name: 'vibes' is not one of"):
        config_from_dict({"reward": {"signals": [{"name": "vibes"}]}})


def test_cross_field_rules_name_the_field():
    with pytest.raises(ConfigError, match=r"^train\.algorithm: temporal builds preference pairs, so it trains"):
        load_config(None, ["method=temporal", "train.algorithm=sft"])
    with pytest.raises(ConfigError, match=r"^judge\.mode: GRPO scores groups inside the trainer"):
        load_config(None, ["train.algorithm=grpo", "judge.mode=text"])
    # The text judge is refused for GRPO only when a judge signal would need it.
    assert load_config(None, ["train.algorithm=grpo", "judge.mode=text", "reward.signals=[{name: verifiable}]"])
    with pytest.raises(ConfigError, match=r"^method\.temperatures: bstar needs at least one temperature"):
        load_config(None, ["method=bstar", "method.temperatures=[]", "train.algorithm=sft"])
    with pytest.raises(ConfigError, match=r"^reward\.signals: name at least one signal"):
        load_config(None, ["reward.signals=[]"])


def test_config_built_in_code_is_validated(tmp_path):
    Config().validate()
    with pytest.raises(ConfigError, match=r"^judge\.mode: 'x' is not one of \['logprob', 'pairwise', 'text', "
                                          r"'verify'\]"):
        Config(judge=JudgeConfig(mode="x")).validate()
    with pytest.raises(ConfigError, match=r"^reward\.signals\[0\]\.name: 'x' is not one of"):
        Config(reward=RewardConfig(signals=[SignalConfig("x")])).validate()
    with pytest.raises(ConfigError, match=r"^generate\.n: expected an integer, got '4'"):
        Config(generate=GenerateConfig(n="4")).validate()
    with pytest.raises(ConfigError, match=r"^eval_data\.path: required when eval_data\.source is 'jsonl'"):
        Config(eval_data=DataConfig(source="jsonl")).validate()
    with pytest.raises(ConfigError, match=r"^train\.algorithm: bstar selects samples offline"):
        Config(method=MethodConfig(name="bstar"), train=TrainConfig(algorithm="grpo")).validate()
    with pytest.raises(ConfigError, match=r"^iterations: must be >= 1, got 0"):
        Config(iterations=0).validate()


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


def test_a_shipped_config_loads_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("tiny_smoke").project == "smoke" and load_config("demo.yaml").project == "demo"
    with pytest.raises(ConfigError, match=r"config file not found: nope \(shipped configs, usable by name: demo, "):
        load_config("nope")
