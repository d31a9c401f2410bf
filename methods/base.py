"""The strategy interface: a method decides what each stage of the one loop does.

An iteration runs `method.stages(cfg)` in order; each name is a method on the strategy taking a
StageContext and returning its typed result (tasks/results.py: ledgered, logged, sent to MLflow).
The default stages are Self-Rewarding's: sample the current model, judge, score, build, train,
evaluate; a method overrides only what it changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfimprove.config import Config
from selfimprove.models.engines import SamplingSpec
from selfimprove.storage.db import Store
from selfimprove.storage.records import Prompt
from selfimprove.tasks.bootstrap import start_model_dir
from selfimprove.tasks.common import run_dir
from selfimprove.tasks.evaluate import evaluate_model
from selfimprove.tasks.generate import generate_samples
from selfimprove.tasks.judge import judge_candidates
from selfimprove.tasks.judge_probe import judge_probe, probes_judge
from selfimprove.tasks.results import (
    BuildResult,
    EvalResult,
    GenerateResult,
    JudgeProbeResult,
    JudgeResult,
    ScoreResult,
    TrainResult,
)
from selfimprove.tasks.score import score_candidates
from selfimprove.tasks.train import train_next_model


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
        """The model the loop started from: the bootstrapped seed when there is one (tasks/bootstrap.py)."""
        return start_model_dir(self.store, self.run_id)

    def spec(self, n: int | None = None, temperature: float | None = None) -> SamplingSpec:
        g = self.cfg.generate
        return SamplingSpec(n or g.n, g.temperature if temperature is None else temperature, g.top_p, g.max_tokens,
                            self.cfg.seed)

    def sample(self, model_dir, purpose: str, spec: SamplingSpec,
               prompts: list[Prompt] | None = None) -> GenerateResult:
        prompts = self.store.prompts(self.run_id, "train") if prompts is None else prompts
        return generate_samples(self.store, self.cfg, self.run_id, self.iteration, model_dir, prompts, spec, purpose)

    def judge(self, purposes: tuple[str, ...], judge_dir=None) -> JudgeResult:
        if not self.cfg.reward.uses_judge:
            return JudgeResult(skipped=True)
        return judge_candidates(self.store, self.cfg, self.run_id, self.iteration, judge_dir or self.model_dir,
                                purposes)

    def score(self, purposes: tuple[str, ...]) -> ScoreResult:
        return score_candidates(self.store, self.cfg, self.run_id, self.iteration, self.model_dir, list(purposes))


class Method:
    name = "base"
    candidate_purposes: tuple[str, ...] = ("train",)  # generations the judge and the reward see

    def stages(self, cfg: Config) -> tuple[str, ...]:
        # The probe measures (and the guard checks) this iteration's judge before anything trains on it.
        probe = ("judge_probe",) if probes_judge(cfg) else ()
        if cfg.train.algorithm == "grpo":  # online: the trainer samples and scores its own groups
            return (*probe, "train", "evaluate")
        return (*probe, "generate", "judge", "score", "build", "train", "evaluate")

    def judge_probe(self, ctx: StageContext) -> JudgeProbeResult:
        return judge_probe(ctx.store, ctx.cfg, ctx.run_id, ctx.iteration, ctx.model_dir)

    def generate(self, ctx: StageContext) -> GenerateResult:
        return ctx.sample(ctx.model_dir, "train", ctx.spec())

    def judge(self, ctx: StageContext) -> JudgeResult:
        return ctx.judge(self.candidate_purposes)

    def score(self, ctx: StageContext) -> ScoreResult:
        return ctx.score(self.candidate_purposes)

    def build(self, ctx: StageContext) -> BuildResult:
        raise NotImplementedError

    def train(self, ctx: StageContext) -> TrainResult:
        return train_next_model(ctx.store, ctx.cfg, ctx.run_id, ctx.iteration, ctx.model_dir, ctx.next_model_dir)

    def evaluate(self, ctx: StageContext) -> EvalResult:
        return evaluate_model(ctx.store, ctx.cfg, ctx.run_id, ctx.iteration, str(ctx.next_model_dir))
