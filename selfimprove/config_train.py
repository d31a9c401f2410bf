"""The config sections for training, evaluation, the champion gate and tracking (the others, and the
section helpers, are in selfimprove/config_sections.py); each field documented here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from selfimprove.config_sections import _positive, _Section, _share
from selfimprove.config_yaml import ConfigError


@dataclass
class LoraConfig(_Section):
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05


@dataclass
class TrainConfig(_Section):
    # dpo (pairs) | sft (selected samples) | grpo (online, reward signals)
    algorithm: Literal["dpo", "sft", "grpo"] = "dpo"
    beta: float = 0.1  # DPO beta; GRPO KL coefficient (0 = no reference model)
    learning_rate: float = 5e-6
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    seed: int = 0
    # Matmul precision: "fp32", or "bf16" autocast (weights and optimizer stay float32, so small
    # updates are not rounded away; ~2x the CPU matmul ceiling with AVX-512 bf16).
    precision: Literal["fp32", "bf16"] = "fp32"
    # Recompute activations in the backward pass instead of keeping them: ~30% more compute for
    # activation memory that no longer grows with depth (7-8B models on one GPU; README's budget).
    gradient_checkpointing: bool = False
    # DPO: compute the reference log-probs for all pairs in one pass before training instead of a
    # reference forward every step. The same updates; no faster on 2 CPU cores (benchmarks/training.py),
    # it saves the reference model's memory on a GPU.
    precompute_ref: bool = False
    # DPO: weight of an NLL (SFT) term on the chosen response (RPO; TRL loss_type ["sigmoid", "sft"],
    # loss_weights [1.0, sft_weight]): keeps the chosen answers likely, against length collapse. 0 = off.
    sft_weight: float = 0.0
    lora: LoraConfig = field(default_factory=LoraConfig)
    # accelerate: DPO/SFT train in a child of `accelerate launch` (multi-GPU, DeepSpeed, FSDP;
    # docs/scale-out.md). GRPO always trains in-process.
    launcher: Literal["inprocess", "accelerate"] = "inprocess"
    num_processes: int = 1  # > 1 needs launcher: accelerate (an error otherwise, never a silent switch)
    # An accelerate YAML; None: configs/accelerate/cpu_single.yaml without CUDA, ddp.yaml with it.
    accelerate_config: str | None = None
    # GRPO's sampler: "transformers" = the policy's generate() (the CPU path); "vllm" = TRL's vLLM colocate
    # mode (a vLLM engine beside the trainer, weights synced each step; needs CUDA vLLM and no judge read
    # through the generation engine). "auto": vllm when both hold, else transformers.
    grpo_generation: Literal["auto", "transformers", "vllm"] = "auto"
    grpo_vllm_gpu_memory_utilization: float = 0.3  # that engine's GPU memory share; the rest is the trainer's

    def check(self, where: str) -> None:
        _positive(where, batch_size=self.batch_size, num_processes=self.num_processes)
        if self.sft_weight < 0:
            raise ConfigError(f"{where}.sft_weight: must be >= 0, got {self.sft_weight}")
        if self.num_processes > 1 and self.launcher != "accelerate":
            raise ConfigError(f"{where}.num_processes: {self.num_processes} processes need {where}.launcher: "
                              f"accelerate (got '{self.launcher}'; in-process training is one process)")
        if self.launcher == "accelerate" and self.algorithm == "grpo":
            # Its reward function appends to DuckDB from inside the trainer: one writer per file.
            raise ConfigError(f"{where}.launcher: grpo trains in-process only; set {where}.launcher: inprocess")
        if self.accelerate_config is not None and not Path(self.accelerate_config).is_file():
            raise ConfigError(f"{where}.accelerate_config: file not found: {self.accelerate_config}")
        _share(where, grpo_vllm_gpu_memory_utilization=self.grpo_vllm_gpu_memory_utilization)


@dataclass
class EvalConfig(_Section):
    k: int = 4  # samples per held-out item for maj@k
    temperature: float = 0.8
    max_tokens: int = 64

    def check(self, where: str) -> None:
        _positive(where, k=self.k)


@dataclass
class GateConfig(_Section):
    # Champion gating: the next iteration starts from the best accepted model, and the MLflow
    # alias `champion` moves only when a new model beats it by more than `margin` on `metric`.
    enabled: bool = False
    metric: Literal["accuracy_greedy", "maj_at_k", "pass_at_k"] = "accuracy_greedy"  # a held-out metric
    margin: float = 0.0
    # Collapse guard (every iteration after evaluation; with gating on, a collapsed model is rejected):
    # held-out no_answer_rate above this, or mean response tokens / the seed's below min_length_ratio.
    max_no_answer_rate: float = 0.05
    min_length_ratio: float = 0.5


@dataclass
class MlflowConfig(_Section):
    tracking_uri: str | None = None  # default: sqlite:///<data_dir>/mlflow.db
    experiment: str | None = None  # default: "<project>-<method>"
    registered_model: str | None = None  # default: "<project>-<run_id>"
