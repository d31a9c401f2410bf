"""Stage 4: train the next model on this iteration's pairs with TRL's DPOTrainer.

The reference model is the current model (TRL copies it when ref_model=None; with LoRA the
adapter-disabled base serves as reference). LoRA adapters are merged before saving, so every
iteration's model is a plain safetensors directory that vLLM can load in place.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from models.loading import load_model, load_tokenizer, model_hash
from storage.db import Store, now
from tasks.common import log


def dpo_dataset(store: Store, run_id: str, iteration: int):
    from datasets import Dataset

    rows = store.pairs(run_id, iteration)
    return Dataset.from_list([{
        "prompt": [{"role": "user", "content": r["prompt_text"]}],
        "chosen": [{"role": "assistant", "content": r["chosen_text"]}],
        "rejected": [{"role": "assistant", "content": r["rejected_text"]}],
    } for r in rows])


def train_dpo(store: Store, cfg, run_id: str, iteration: int, base_dir: str | Path, out_dir: str | Path) -> dict:
    import torch
    from trl import DPOConfig, DPOTrainer

    tc = cfg.train
    out_dir = Path(out_dir)
    dataset = dpo_dataset(store, run_id, iteration)
    base_hash = model_hash(base_dir)
    if len(dataset) == 0:
        # Nothing to learn from: the next model is the current one, recorded as such.
        log.warning("iteration %d: no pairs, the model is carried over unchanged", iteration)
        _copy_model(base_dir, out_dir)
        return _record(store, cfg, run_id, iteration, base_dir, out_dir, 0, 0, None, 0.0, 0.0)

    torch.manual_seed(tc.seed)
    tokenizer = load_tokenizer(base_dir)
    model = load_model(base_dir, "float32", cfg.model.trust_remote_code)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_config = None
    if tc.lora.enabled:
        from peft import LoraConfig

        peft_config = LoraConfig(r=tc.lora.r, lora_alpha=tc.lora.alpha, lora_dropout=tc.lora.dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    work = out_dir.with_name(out_dir.name + ".trainer")
    args = DPOConfig(
        output_dir=str(work), beta=tc.beta, learning_rate=tc.learning_rate, num_train_epochs=tc.epochs,
        per_device_train_batch_size=tc.batch_size, gradient_accumulation_steps=tc.grad_accum,
        max_length=tc.max_length, seed=tc.seed, bf16=False, use_cpu=not torch.cuda.is_available(),
        logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=False, dataset_num_proc=None)
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=peft_config)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    trained = trainer.model.merge_and_unload() if peft_config is not None else trainer.model
    changed = _changed_fraction(before, trained)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    trained.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)  # a crash while saving never leaves a half model at out_dir
    shutil.rmtree(work, ignore_errors=True)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    summary = _record(store, cfg, run_id, iteration, base_dir, out_dir, len(dataset), result.global_step,
                      result.training_loss, seconds, changed)
    summary.update(first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None,
                   base_model_hash=base_hash,
                   reward_accuracy=_last(trainer.state.log_history, "rewards/accuracies"))
    return summary


def _changed_fraction(before: dict, model) -> float:
    """Share of the base model's parameter tensors that differ after training."""
    after = dict(model.named_parameters())
    compared = [n for n in before if n in after]
    changed = sum(1 for n in compared if not before[n].equal(after[n].detach()))
    return changed / max(len(compared), 1)


def _last(history: list[dict], key: str):
    values = [h[key] for h in history if key in h]
    return values[-1] if values else None


def _copy_model(src, dst) -> None:
    dst = Path(dst)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)


def _record(store, cfg, run_id, iteration, base_dir, out_dir, examples, steps, loss, seconds, changed) -> dict:
    digest = model_hash(out_dir)
    store.append("train_runs", [{
        "run_id": run_id, "iteration": iteration, "algorithm": cfg.train.algorithm, "base_model_path": str(base_dir),
        "output_model_path": str(out_dir), "output_model_hash": digest, "num_examples": examples, "steps": steps,
        "train_loss": loss, "seconds": seconds, "params_changed_fraction": changed,
        "config_json": json.dumps(cfg.to_dict()["train"]), "created_at": now()}])
    return {"model_dir": str(out_dir), "model_hash": digest, "examples": examples, "steps": steps,
            "loss": loss, "params_changed_fraction": changed}
