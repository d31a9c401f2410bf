"""Stage: train the next model with TRL: DPO on pairs, SFT on selected samples, or GRPO online.

DPO's reference model is the current model (TRL copies it when ref_model=None; with LoRA the
adapter-disabled base serves as reference). LoRA adapters are merged before saving, so every
iteration's model is a plain safetensors directory that vLLM can load in place. Training runs
in float32 on CPU unless train.precision is bf16 (autocast: weights and optimizer stay float32,
since small DPO updates vanish when rounded to bf16 weights).

With train.launcher "accelerate", DPO and SFT train in a child started by `accelerate launch`
(tasks/train_launch.py), which calls the same *_in_process functions below; GRPO trains here.
Before any training starts the GPU is freed (free_gpu_for_training): the cached scoring model
(models/scoring.py) on CUDA, and the live generation engine as engine.release_for_training says.
"""
from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

from selfimprove.models.engines import release_engine_for_training
from selfimprove.models.loading import load_model, load_tokenizer, model_hash
from selfimprove.models.scoring import release_scoring_model
from selfimprove.storage.db import Store
from selfimprove.storage.records import TrainRun
from selfimprove.tasks.common import log
from selfimprove.tasks.results import TrainResult


def common_training_args(cfg, out_dir: Path, epochs: float | None) -> dict:
    import torch

    tc = cfg.train
    return {"output_dir": str(out_dir.with_name(out_dir.name + ".trainer")), "learning_rate": tc.learning_rate,
            "num_train_epochs": tc.epochs if epochs is None else epochs, "per_device_train_batch_size": tc.batch_size,
            "gradient_accumulation_steps": tc.grad_accum, "seed": tc.seed, "bf16": tc.precision == "bf16",
            "gradient_checkpointing": tc.gradient_checkpointing,
            "use_cpu": not torch.cuda.is_available(), "logging_steps": 1, "save_strategy": "no", "report_to": [],
            "disable_tqdm": False, "dataset_num_proc": None}


def _peft_config(cfg):
    if not cfg.train.lora.enabled:
        return None
    from peft import LoraConfig

    lc = cfg.train.lora
    return LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules="all-linear",
                      task_type="CAUSAL_LM")


def fit_and_save(trainer_cls, args, cfg, base_dir, out_dir: Path, dataset, **extra) -> dict | None:
    """Train `trainer_cls` from base_dir on dataset, merge LoRA, save atomically to out_dir.

    Returns the stats on the main process and None on the other ranks of a multi-process launch."""
    import torch

    torch.manual_seed(cfg.train.seed)
    tokenizer = load_tokenizer(base_dir)
    model = load_model(base_dir, "float32", cfg.model.trust_remote_code)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_config = _peft_config(cfg)
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          peft_config=peft_config, callbacks=[_step_logger()], **extra)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    _stop_colocated_vllm(trainer)
    trained = _final_model(trainer, cfg, base_dir, peft_config)
    if trained is None:  # another rank of an `accelerate launch`: the main process saves
        return None
    after = dict(trained.named_parameters())
    changed = sum(1 for n in before if n in after and not before[n].equal(after[n].detach())) / max(len(before), 1)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    trained.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)  # a crash while saving never leaves a half model at out_dir
    shutil.rmtree(args.output_dir, ignore_errors=True)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"examples": len(dataset), "steps": result.global_step, "loss": result.training_loss,
            "seconds": seconds, "params_changed_fraction": changed,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}


def _stop_colocated_vllm(trainer) -> None:
    """GRPO with train.grpo_generation vllm: shut TRL's colocated vLLM engine down once training is
    done. Dropping the trainer would not free it (vLLM gc-freezes its engine, models/vllm_engine.py),
    and the next stage's engine needs that GPU memory and a process without another vLLM engine."""
    generation = getattr(trainer, "vllm_generation", None)
    if getattr(generation, "llm", None) is None:
        return
    from selfimprove.models.device import release_cuda_memory
    from selfimprove.models.vllm_engine import shutdown_llm

    shutdown_llm(generation.llm)
    generation.llm = None
    release_cuda_memory()


def free_gpu_for_training(engine: str = "release") -> None:
    """What every training run does first (`_train`, GRPO's run_grpo): drop a scoring model left on
    the GPU by the judge/score stages, then the live generation engine's memory: "release" = as its
    engine.release_for_training resolved (sleep or close on a GPU; nothing on CPU), "close" = closed
    whatever the setting (GRPO's colocated vLLM must be the only vLLM engine in the process), "keep" =
    left alone (GRPO's judge reads through it while training).
    """
    release_scoring_model()
    if engine == "keep":
        return
    done = release_engine_for_training(close=engine == "close")
    if done in ("sleep", "close"):
        log.info("training: the generation engine %s while the trainer runs",
                 "sleeps (vLLM sleep level 2)" if done == "sleep" else "was closed")


SHOWN_LOGS = ("loss", "grad_norm", "rewards/margins", "reward", "train_loss", "train_runtime")


def _step_logger():
    """Each logged training step as a log line ("train step 3/8 loss=0.69 ..."): the Prefect UI
    and log files see training progress; the terminal also has the trainer's own progress bar."""
    from transformers import TrainerCallback

    class StepLogger(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                shown = " ".join(f"{k}={v:.4g}" for k, v in logs.items()
                                 if k in SHOWN_LOGS
                                 and isinstance(v, float))
                log.info("train step %d/%d %s", state.global_step, state.max_steps, shown)

    return StepLogger()


def _final_model(trainer, cfg, base_dir, peft_config):
    """The trained weights as a plain (LoRA-merged) model on the main process; None on other ranks.

    In-process, DDP and ZeRO-2 keep whole weights on every rank. FSDP and ZeRO-3 shard them: those
    are gathered (a collective, so every rank enters it) and loaded into a fresh base model.
    """
    accelerator = trainer.accelerator
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        state = accelerator.get_state_dict(trainer.model_wrapped)
        if not accelerator.is_main_process:
            return None
        model = load_model(base_dir, "float32", cfg.model.trust_remote_code)
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        model.load_state_dict(state)
    elif not accelerator.is_main_process:
        return None
    else:
        model = trainer.model
    return model.merge_and_unload() if peft_config is not None else model


def run_dpo(cfg, base_dir, out_dir, examples: list[dict], epochs: float | None = None) -> dict:
    """DPO from base_dir on [{"prompt_text", "chosen_text", "rejected_text"}] into out_dir."""
    return _train("dpo", cfg, base_dir, out_dir, examples, epochs)


def run_sft(cfg, base_dir, out_dir, examples: list[dict], epochs: float | None = None) -> dict:
    """SFT (loss on the completion only) from base_dir on [{"prompt_text", "text"}] into out_dir."""
    return _train("sft", cfg, base_dir, out_dir, examples, epochs)


def _train(algorithm: str, cfg, base_dir, out_dir, examples: list[dict], epochs: float | None) -> dict:
    # Every DPO/SFT run starts here (iterations, the temporal look-ahead, the judge bootstrap), in-process
    # or launched: a scoring model or an engine left on the GPU by earlier stages would take the memory
    # the trainer (or the launched child, another process) needs. No-op on CPU.
    free_gpu_for_training()
    if cfg.train.launcher == "accelerate":
        from selfimprove.tasks.train_launch import launch_training

        return launch_training(algorithm, cfg, base_dir, out_dir, examples, epochs)
    return IN_PROCESS[algorithm](cfg, base_dir, out_dir, examples, epochs)


def dpo_in_process(cfg, base_dir, out_dir, examples: list[dict], epochs: float | None = None) -> dict | None:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": e["prompt_text"]}],
                                  "chosen": [{"role": "assistant", "content": e["chosen_text"]}],
                                  "rejected": [{"role": "assistant", "content": e["rejected_text"]}]}
                                 for e in examples])
    args = DPOConfig(**dpo_args(cfg.train), **common_training_args(cfg, Path(out_dir), epochs))
    return fit_and_save(DPOTrainer, args, cfg, base_dir, Path(out_dir), dataset, ref_model=None)


def dpo_args(tc) -> dict:
    """DPOConfig's DPO-specific keywords from train config. sft_weight > 0 adds TRL's NLL term on the
    chosen response (RPO): loss = sigmoid DPO loss + sft_weight x mean token NLL of the chosen side.

    >>> from selfimprove.config import TrainConfig
    >>> dpo_args(TrainConfig(sft_weight=0.5))["loss_type"], dpo_args(TrainConfig(sft_weight=0.5))["loss_weights"]
    (['sigmoid', 'sft'], [1.0, 0.5])
    >>> "loss_type" in dpo_args(TrainConfig())
    False
    """
    args = {"beta": tc.beta, "max_length": tc.max_length, "precompute_ref_log_probs": tc.precompute_ref,
            "precompute_ref_batch_size": 64}
    if tc.sft_weight > 0:
        args.update(loss_type=["sigmoid", "sft"], loss_weights=[1.0, float(tc.sft_weight)])
    return args


def sft_in_process(cfg, base_dir, out_dir, examples: list[dict], epochs: float | None = None) -> dict | None:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": e["prompt_text"]}],
                                  "completion": [{"role": "assistant", "content": e["text"]}]} for e in examples])
    args = SFTConfig(max_length=cfg.train.max_length, **common_training_args(cfg, Path(out_dir), epochs))
    return fit_and_save(SFTTrainer, args, cfg, base_dir, Path(out_dir), dataset)


# What a training child runs (tasks/train_launch.py); stats come back None on non-main ranks.
IN_PROCESS = {"dpo": dpo_in_process, "sft": sft_in_process}


def training_examples(store: Store, cfg, run_id: str, iteration: int) -> list[dict]:
    """The iteration's pairs (dpo) or selected samples (sft), as the rows the trainers read, plus
    `bootstrap.replay` of the bootstrap's judge examples (so training the policy keeps the judge)."""
    replayed = replay_examples(store, cfg, run_id, iteration)
    if cfg.train.algorithm == "dpo":
        return [{"prompt_text": p.prompt_text, "chosen_text": p.chosen_text, "rejected_text": p.rejected_text}
                for p in store.pair_texts(run_id, iteration)] + [
            {"prompt_text": e.user_text, "chosen_text": e.completion, "rejected_text": e.wrong_completion}
            for e in replayed]
    return [{"prompt_text": e.prompt_text, "text": e.text} for e in store.sft_texts(run_id, iteration)] + [
        {"prompt_text": e.user_text, "text": e.completion} for e in replayed]


def replay_examples(store: Store, cfg, run_id: str, iteration: int) -> list:
    """A seeded draw of `bootstrap.replay` judge examples for this iteration (none without a bootstrap):
    in DPO the right verdict is chosen over the wrong one."""
    if not (cfg.bootstrap.enabled and cfg.bootstrap.replay):
        return []
    judges = store.bootstrap_examples(run_id, "judge")
    return random.Random(cfg.seed * 1000 + iteration).sample(judges, min(cfg.bootstrap.replay, len(judges)))


def train_next_model(store: Store, cfg, run_id: str, iteration: int, base_dir, out_dir) -> TrainResult:
    """Train M_{i+1} from M_i (base_dir) by the configured algorithm; record it in train_runs."""
    out_dir = Path(out_dir)
    algorithm = cfg.train.algorithm
    discarded = 0
    if algorithm == "grpo":
        from selfimprove.tasks.grpo import run_grpo

        discarded = store.discard_unfinished_grpo(run_id, iteration)
        if discarded:
            log.warning("iteration %d: removed %d GRPO rows of an attempt that did not finish", iteration, discarded)
        stats = run_grpo(store, cfg, run_id, iteration, base_dir, out_dir)
    else:
        examples = training_examples(store, cfg, run_id, iteration)
        if not examples:  # nothing to learn from: the next model is the current one, recorded as such
            log.warning("iteration %d: no training examples, the model is carried over unchanged", iteration)
            shutil.rmtree(out_dir, ignore_errors=True)
            shutil.copytree(base_dir, out_dir)
            stats = {"examples": 0, "steps": 0, "loss": None, "seconds": 0.0, "params_changed_fraction": 0.0}
        else:
            stats = (run_dpo if algorithm == "dpo" else run_sft)(cfg, base_dir, out_dir, examples)
    digest = model_hash(out_dir)
    store.add([TrainRun(run_id, iteration, algorithm, str(base_dir), str(out_dir), digest, stats["examples"],
                        stats["steps"], stats["loss"], stats["seconds"], stats["params_changed_fraction"],
                        json.dumps(cfg.to_dict()["train"]))])
    return TrainResult(model_dir=str(out_dir), model_hash=digest, base_model_hash=model_hash(base_dir),
                       examples=stats["examples"], steps=stats["steps"], loss=stats["loss"],
                       first_loss=stats.get("first_loss"), last_loss=stats.get("last_loss"),
                       train_seconds=stats["seconds"], params_changed_fraction=stats["params_changed_fraction"],
                       discarded_rows=discarded)
