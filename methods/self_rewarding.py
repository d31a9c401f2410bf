"""Self-Rewarding Language Models (Yuan et al. 2024): the model samples, judges its own
candidates, and the best and worst by self-reward become a DPO pair. With `train.algorithm: sft`
the best candidate of each kept pair is the SFT target instead (rejection-sampling fine-tuning)."""
from __future__ import annotations

from dataclasses import replace

from selfimprove.methods.base import Method, StageContext
from selfimprove.storage.records import SftExample
from selfimprove.tasks.build import build_pairs
from selfimprove.tasks.results import BuildResult


class SelfRewarding(Method):
    name = "self_rewarding"

    def build(self, ctx: StageContext) -> BuildResult:
        result = build_pairs(ctx.store, ctx.cfg, ctx.run_id, ctx.iteration)
        if ctx.cfg.train.algorithm == "sft":
            examples = [SftExample(ctx.run_id, ctx.iteration, p.chosen_generation_id, p.prompt_id, p.chosen_score)
                        for p in ctx.store.pairs(ctx.run_id, ctx.iteration)]
            ctx.store.add(examples)
            result = replace(result, sft_examples=len(examples))
        return result
