"""The strategy interface: a method decides what each stage of the one loop does.

An iteration runs `method.stages(cfg)` in order; each name is a method on the strategy taking a
StageContext and returning a small summary dict (logged, ledgered, sent to MLflow). The default
stages are Self-Rewarding's: sample the current model, judge, score, build, train, evaluate;
a method overrides only what it changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.engines import SamplingSpec
from selfimprove.config import Config
from storage.db import Store
from tasks.common import run_dir
from tasks.evaluate import evaluate_model
from tasks.generate import generate_samples
from tasks.judge import judge_candidates
from tasks.score import score_candidates
from tasks.train import train_next_model


@dataclass
class StageContext:
    store: Store
    cfg: Config
    run_id: str
    iteration: int
    model_dir: str  # M_i: the model this iteration starts from

    @property
    def next_model_dir(self) -> Path:
        return run_dir(self.cfg, self.run_id) / f"iter-{self.iteration}" / "model"

    @property
    def initial_model_dir(self) -> str:
        return self.store.iteration(self.run_id, 0)["model_path"]

    def spec(self, n: int | None = None, temperature: float | None = None) -> SamplingSpec:
        g = self.cfg.generate
        return SamplingSpec(n or g.n, g.temperature if temperature is None else temperature, g.top_p, g.max_tokens,
                            self.cfg.seed)

    def sample(self, model_dir, purpose: str, spec: SamplingSpec, prompts: list[dict] | None = None) -> dict:
        prompts = self.store.prompts(self.run_id, "train") if prompts is None else prompts
        return generate_samples(self.store, self.cfg, self.run_id, self.iteration, model_dir, prompts, spec, purpose)

    def judge(self, purposes: tuple[str, ...], judge_dir=None) -> dict:
        if "judge" not in {s.name for s in self.cfg.reward.signals}:
            return {"skipped": 1}
        return judge_candidates(self.store, self.cfg, self.run_id, self.iteration, judge_dir or self.model_dir, purposes)

    def score(self, purposes: tuple[str, ...]) -> dict:
        return score_candidates(self.store, self.cfg, self.run_id, self.iteration, self.model_dir, list(purposes))


class Method:
    name = "base"
    candidate_purposes: tuple[str, ...] = ("train",)  # generations the judge and the reward see

    def stages(self, cfg: Config) -> tuple[str, ...]:
        if cfg.train.algorithm == "grpo":  # online: the trainer samples and scores its own groups
            return ("train", "evaluate")
        return ("generate", "judge", "score", "build", "train", "evaluate")

    def generate(self, ctx: StageContext) -> dict:
        return ctx.sample(ctx.model_dir, "train", ctx.spec())

    def judge(self, ctx: StageContext) -> dict:
        return ctx.judge(self.candidate_purposes)

    def score(self, ctx: StageContext) -> dict:
        return ctx.score(self.candidate_purposes)

    def build(self, ctx: StageContext) -> dict:
        raise NotImplementedError

    def train(self, ctx: StageContext) -> dict:
        return train_next_model(ctx.store, ctx.cfg, ctx.run_id, ctx.iteration, ctx.model_dir, ctx.next_model_dir)

    def evaluate(self, ctx: StageContext) -> dict:
        return evaluate_model(ctx.store, ctx.cfg, ctx.run_id, ctx.iteration, str(ctx.next_model_dir))
