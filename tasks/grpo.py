"""GRPO with TRL's GRPOTrainer, rewarded by the configured self-reward signals.

The trainer samples its own groups (generate.n completions per prompt) from the policy as it
trains; our reward function scores each group with the same signals as the offline methods and
records every completion as a generation (purpose "grpo") with its per-signal rewards, so GRPO
runs land in DuckDB like any other. Model-based signals (judge, self-certainty, entropy, Borda)
are read from M_i, the iteration's frozen starting model: a fixed reward for the whole iteration.
"""
from __future__ import annotations

from pathlib import Path

from models.loading import chat_prompt_ids, model_hash
from storage.db import Store, now
from tasks.answers import extract_answer, is_correct
from tasks.judge import judge_logprob
from tasks.judge_prompt import judge_prompt
from tasks.score import CONFIDENCE, combined, group_signals


class GroupRecorder:
    """The reward function TRL calls: score each group, store completions and rewards, return rewards."""

    __name__ = "self_reward"  # TRL names reward columns after the function

    def __init__(self, store: Store, cfg, run_id: str, iteration: int, base_dir, prompts: dict[str, dict]):
        from models.scoring import scoring_model

        self.store, self.cfg, self.run_id, self.iteration = store, cfg, run_id, iteration
        self.prompts, self.base_dir, self.digest = prompts, str(base_dir), model_hash(base_dir)
        self.weights = {s.name: s.weight for s in cfg.reward.signals}
        needs_model = bool(set(self.weights) & (CONFIDENCE | {"judge"}))
        self.model, self.tokenizer = scoring_model(base_dir, cfg.model.dtype) if needs_model else (None, None)
        self.calls = 0
        self.confidence: dict = {}  # generation_id -> (self_certainty, negative_entropy), per call

    def __call__(self, prompts, completions, completion_ids, prompt_id, **_) -> list[float]:
        self.calls += 1
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        rows = []
        for i, (pid, text, ids) in enumerate(zip(prompt_id, texts, completion_ids)):
            meta = self.prompts[pid]
            answer = extract_answer(text)
            rows.append({"generation_id": f"{self.run_id}:{self.iteration}:grpo:{pid}:{self.calls}-{i}",
                         "prompt_id": pid, "text": text, "token_ids": list(ids), "extracted_answer": answer,
                         "correct": is_correct(answer, meta["answer"], meta["source"], meta["metadata_json"]),
                         "prompt_text": meta["prompt_text"], "question": meta["question"]})
        self._model_signals(rows)
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(r["prompt_id"], []).append(i)
        rewards: list[float] = [0.0] * len(rows)
        records = []
        for members in groups.values():
            group = [rows[i] for i in members]
            values = group_signals(set(self.weights), group, self.confidence)
            values["reward"] = combined(values, self.weights)
            for name, column in values.items():
                records += [{"run_id": self.run_id, "iteration": self.iteration, "generation_id": r["generation_id"],
                             "signal": name, "value": v, "created_at": now()} for r, v in zip(group, column)]
            for i, v in zip(members, values["reward"]):
                rewards[i] = 0.0 if v is None else v
        self.store.append("generations", [self._generation_row(r) for r in rows])
        self.store.append("rewards", records)
        return rewards

    def _model_signals(self, rows: list[dict]) -> None:
        """Judge scores and confidence statistics of the group, from M_i."""
        from tasks.rewards import completion_logits_stats

        self.confidence = {}
        if "judge" in self.weights:
            scored = judge_logprob(self.model, self.tokenizer, [judge_prompt(r["question"], r["text"]) for r in rows])
            for r, ((_, score),) in zip(rows, scored):
                r["judge_score"] = score
        if set(self.weights) & CONFIDENCE:
            prompt_ids = [chat_prompt_ids(self.tokenizer, r["prompt_text"]) for r in rows]
            stats = completion_logits_stats(self.model, prompt_ids, [r["token_ids"] for r in rows],
                                            self.tokenizer.pad_token_id)
            self.confidence = {r["generation_id"]: s for r, s in zip(rows, stats)}

    def _generation_row(self, r: dict) -> dict:
        return {"generation_id": r["generation_id"], "run_id": self.run_id, "iteration": self.iteration,
                "purpose": "grpo", "prompt_id": r["prompt_id"], "sample_index": self.calls,
                "model_path": f"{self.base_dir} (GRPO policy, step {self.calls})", "model_hash": None,
                "engine": "trl", "temperature": self.cfg.generate.temperature, "text": r["text"],
                "token_ids": r["token_ids"], "logprobs": None, "finish_reason": None,
                "num_tokens": len(r["token_ids"]), "extracted_answer": r["extracted_answer"],
                "correct": r["correct"], "created_at": now()}


def run_grpo(store: Store, cfg, run_id: str, iteration: int, base_dir, out_dir: Path) -> dict:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from tasks.train import common_training_args, fit_and_save

    prompts = {p["prompt_id"]: p for p in store.prompts(run_id, "train")}
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p["prompt_text"]}], "prompt_id": pid}
                                 for pid, p in prompts.items()])
    n = cfg.generate.n
    args_common = common_training_args(cfg, out_dir, None)
    args_common.pop("dataset_num_proc")  # not a GRPOConfig field
    args_common["per_device_train_batch_size"] = max(n, cfg.train.batch_size // n * n)  # whole groups per step
    args = GRPOConfig(num_generations=n, max_completion_length=cfg.generate.max_tokens,
                      temperature=cfg.generate.temperature, top_p=cfg.generate.top_p, beta=cfg.train.beta,
                      use_vllm=False, **args_common)
    recorder = GroupRecorder(store, cfg, run_id, iteration, base_dir, prompts)
    return fit_and_save(GRPOTrainer, args, cfg, base_dir, out_dir, dataset, reward_funcs=[recorder])
