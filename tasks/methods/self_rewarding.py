"""Self-Rewarding Language Models (Yuan et al. 2024): the model samples, judges its own
candidates, and the best and worst by self-reward become a DPO pair. With `train.algorithm: sft`
the best candidate of each kept pair is the SFT target instead (rejection-sampling fine-tuning)."""
from __future__ import annotations

from storage.db import now
from tasks.build import build_pairs
from tasks.methods.base import Method, StageContext


class SelfRewarding(Method):
    name = "self_rewarding"

    def build(self, ctx: StageContext) -> dict:
        summary = build_pairs(ctx.store, ctx.cfg, ctx.run_id, ctx.iteration)
        if ctx.cfg.train.algorithm == "sft":
            ctx.store.append("sft_examples", [
                {"run_id": ctx.run_id, "iteration": ctx.iteration, "generation_id": p["chosen_generation_id"],
                 "prompt_id": p["prompt_id"], "reward": p["chosen_score"], "created_at": now()}
                for p in ctx.store.pairs(ctx.run_id, ctx.iteration)])
        return summary
