"""The one config object: typed dataclasses, YAML merged over defaults, CLI `--set a.b=v` over YAML.

The sections and their fields are documented in selfimprove/config_sections.py and config_train.py, nowhere else.
Loading checks each value as it builds (an unknown key, a wrong type, a value outside its Literal) and
then runs Config.validate(): each section's own rules, then the rules across sections. The first
problem raises ConfigError naming the dotted field (and the file). Reading YAML and checking a value
against its annotation live in selfimprove/config_yaml.py (which defines ConfigError; import it from here).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from selfimprove.config_sections import (  # noqa: F401 - re-exported: callers import sections from here
    BootstrapConfig,
    DataConfig,
    EngineConfig,
    GenerateConfig,
    JudgeConfig,
    MethodConfig,
    ModelConfig,
    PairsConfig,
    RewardConfig,
    SignalConfig,
)
from selfimprove.config_train import EvalConfig, GateConfig, LoraConfig, MlflowConfig, TrainConfig  # noqa: F401
from selfimprove.config_yaml import ConfigError, build, check_fields, read_tree


@dataclass
class Config:
    project: str = "selfimprove"
    data_dir: str = "data"  # DuckDB file, MLflow store, model dirs, caches
    method: MethodConfig = field(default_factory=MethodConfig)
    iterations: int = 2
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval_data: DataConfig | None = None  # extra evaluation source (e.g. gsm8k); None = held-out split only
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Hash of what a run computes; data_dir (where records go, relative or absolute) is left out."""
        tree = {k: v for k, v in self.to_dict().items() if k != "data_dir"}
        return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:12]

    def validate(self) -> None:
        """Every field's type and Literal, each section's rules, then the rules across sections.

        load_config runs this; a Config built in code can call it. The first broken rule raises.
        """
        check_fields(self)  # each section runs its own validate(where)
        if self.iterations < 1:
            raise ConfigError(f"iterations: must be >= 1, got {self.iterations}")
        method, algorithm, mode = self.method.name, self.train.algorithm, self.judge.mode
        if method == "temporal" and algorithm != "dpo":
            raise ConfigError("train.algorithm: temporal builds preference pairs, so it trains with dpo")
        if method == "bstar" and algorithm == "grpo":
            raise ConfigError("train.algorithm: bstar selects samples offline; use sft (as the paper) or dpo")
        if algorithm == "grpo" and mode == "text" and self.reward.uses_judge:
            raise ConfigError("judge.mode: GRPO scores groups inside the trainer with a pointwise judge; "
                              "set judge.mode: logprob or verify")
        if algorithm == "grpo" and self.train.grpo_generation == "vllm" and self.reward.uses_judge \
                and self.judge.backend == "engine":
            # The judge reads through the generation engine while GRPO trains: a second vLLM engine
            # beside TRL's colocated one, in one process, on one GPU (tasks/grpo.py).
            raise ConfigError("train.grpo_generation: 'vllm' starts TRL's own vLLM engine while the judge reads "
                              "GRPO's rewards through the generation engine (judge.backend: engine): two vLLM "
                              "engines in one process; set judge.backend: transformers, or "
                              "train.grpo_generation: auto or transformers")
        if self.bootstrap.enabled and self.judge.probe_size < 1:
            raise ConfigError("bootstrap.enabled: the bootstrap reports the judge's AUC before and after on the "
                              "probe; set judge.probe_size (e.g. 100)")
        if mode == "pairwise" and (method != "self_rewarding" or algorithm == "grpo"):
            # Temporal and B-STaR compare scores from separate judging calls (future samples, probe vs
            # train); GRPO scores groups inside the trainer. Pairwise scores are relative to one call.
            raise ConfigError(f"judge.mode: pairwise scores are relative to the candidates judged together; it "
                              f"works with method self_rewarding and dpo/sft (got {method} + {algorithm})")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = (), base: dict | None = None) -> Config:
    """Defaults <- `base` <- YAML file <- `key.sub=value` overrides (values parsed as YAML scalars), validated."""
    tree = read_tree(path, overrides, base)
    try:
        config = build(Config, tree)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None
    config.validate()
    return config


def config_from_dict(tree: dict) -> Config:
    """Rebuild a Config stored with a run (DuckDB / flow parameters): types and Literals checked, rules not rerun."""
    return build(Config, tree)
