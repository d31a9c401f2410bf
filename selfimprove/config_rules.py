"""The config's cross-field rules (selfimprove/config.py builds and type-checks each field)."""
from __future__ import annotations

from pathlib import Path

from selfimprove.config import Config, ConfigError, TrainConfig


def check_values(config: Config) -> None:
    """Rules across fields that types alone cannot say; the first broken one raises, naming its field."""
    positive = {"iterations": config.iterations, "generate.n": config.generate.n, "judge.k": config.judge.k,
                "data.train_size": config.data.train_size, "eval.k": config.eval.k,
                "train.batch_size": config.train.batch_size, "train.num_processes": config.train.num_processes,
                "engine.tensor_parallel_size": config.engine.tensor_parallel_size,
                "engine.pipeline_parallel_size": config.engine.pipeline_parallel_size,
                "engine.data_parallel_size": config.engine.data_parallel_size, "engine.workers": config.engine.workers}
    for where, value in positive.items():
        if value < 1:
            raise ConfigError(f"{where}: must be >= 1, got {value}")
    if config.generate.n < 2:
        raise ConfigError("generate.n: needs >= 2 candidates per prompt (pairs, groups and votes compare them)")
    if not config.reward.signals:
        raise ConfigError("reward.signals: name at least one signal")
    if config.method.name == "temporal" and config.train.algorithm != "dpo":
        raise ConfigError("train.algorithm: temporal builds preference pairs, so it trains with dpo")
    if config.method.name == "bstar" and config.train.algorithm == "grpo":
        raise ConfigError("train.algorithm: bstar selects samples offline; use sft (as the paper) or dpo")
    if config.train.algorithm == "grpo" and config.judge.mode == "text" and \
            any(s.name == "judge" for s in config.reward.signals):
        raise ConfigError("judge.mode: GRPO scores groups inside the trainer with the logprob judge; set judge.mode: logprob")
    if config.judge.mode == "pairwise" and (config.method.name != "self_rewarding" or config.train.algorithm == "grpo"):
        # Temporal and B-STaR compare scores from separate judging calls (future samples, probe vs
        # train); GRPO scores groups inside the trainer. Pairwise scores are relative to one call.
        raise ConfigError(f"judge.mode: pairwise scores are relative to the candidates judged together; it works with "
                          f"method self_rewarding and dpo/sft (got {config.method.name} + {config.train.algorithm})")
    _check_launcher(config.train)
    if config.method.name == "bstar" and not config.method.temperatures:
        raise ConfigError("method.temperatures: bstar needs at least one temperature to probe")
    for where, data in (("data", config.data), ("eval_data", config.eval_data)):
        if data and data.source in {"jsonl", "parquet", "hf_disk"}:
            if not data.path:
                raise ConfigError(f"{where}.path: required when {where}.source is '{data.source}'")
            if not Path(data.path).exists():
                raise ConfigError(f"{where}.path: file not found: {data.path}")


def _check_launcher(tc: TrainConfig) -> None:
    if tc.num_processes > 1 and tc.launcher != "accelerate":
        raise ConfigError(f"train.num_processes: {tc.num_processes} processes need train.launcher: accelerate "
                          f"(got '{tc.launcher}'; in-process training is one process)")
    if tc.launcher == "accelerate" and tc.algorithm == "grpo":
        # Its reward function appends to DuckDB from inside the trainer: one writer per file.
        raise ConfigError("train.launcher: grpo trains in-process only; set train.launcher: inprocess")
    if tc.accelerate_config is not None and not Path(tc.accelerate_config).is_file():
        raise ConfigError(f"train.accelerate_config: file not found: {tc.accelerate_config}")
