"""B-STaR (Zeng et al. 2024): before sampling, probe several temperatures on a subset of the
training prompts, score the probe samples with the configured reward, and pick the
(temperature, reward threshold) with the best balance score. The iteration then samples at that
temperature and keeps the samples whose reward clears that threshold: as SFT targets (the
paper's choice), or with `train.algorithm: dpo` as chosen answers against a candidate below it.

"Correct" for the balance score comes from the verifiable answer; prompts without one count as
not correct (see tasks/bstar.py). The whole grid and the exploration / exploitation figures of
the chosen configuration land in DuckDB (`bstar_grid`, ledger) and MLflow (`probe/*`).
"""
from __future__ import annotations

from tasks.bstar import ProbeSample, default_thresholds, exploration_exploitation, grid_search, select_samples
from tasks.build import Candidate, pair_row, save_pairs
from tasks.methods.base import Method, StageContext
from storage.db import now


def probe_purpose(temperature: float) -> str:
    return f"probe_t{temperature:g}"


def probe_queries(ctx: StageContext, purpose: str) -> tuple[list[list[ProbeSample]], list[list[dict]]]:
    """Samples of one purpose grouped per prompt, as ProbeSamples (reward None -> -inf, never selected)."""
    rows = ctx.store.query(
        "SELECT g.generation_id, g.prompt_id, g.text, g.extracted_answer, g.correct, r.value AS reward "
        "FROM generations g LEFT JOIN rewards r ON r.generation_id = g.generation_id AND r.signal = 'reward' "
        "WHERE g.run_id = ? AND g.iteration = ? AND g.purpose = ? ORDER BY g.prompt_id, g.sample_index",
        [ctx.run_id, ctx.iteration, purpose])
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["prompt_id"], []).append(r)
    queries = [[ProbeSample(r["text"], r["extracted_answer"], float("-inf") if r["reward"] is None else r["reward"],
                            r["correct"]) for r in group] for group in groups.values()]
    return queries, list(groups.values())


class BStar(Method):
    name = "bstar"

    def stages(self, cfg) -> tuple[str, ...]:
        return ("probe", "generate", "judge", "score", "build", "train", "evaluate")

    def probe(self, ctx: StageContext) -> dict:
        mc = ctx.cfg.method
        prompts = ctx.store.prompts(ctx.run_id, "train")[: mc.probe_prompts]
        purposes = tuple(probe_purpose(t) for t in mc.temperatures)
        for temperature, purpose in zip(mc.temperatures, purposes):
            ctx.sample(ctx.model_dir, purpose, ctx.spec(n=mc.probe_samples, temperature=temperature), prompts)
        ctx.judge(purposes)
        ctx.score(purposes)
        probes = {t: probe_queries(ctx, p)[0] for t, p in zip(mc.temperatures, purposes)}
        observed = [s.reward for qs in probes.values() for q in qs for s in q if s.reward != float("-inf")]
        thresholds = mc.thresholds or default_thresholds(observed) or [0.0]
        (temperature, threshold), table = grid_search(probes, thresholds, mc.n_star)
        ctx.store.append("bstar_grid", [{"run_id": ctx.run_id, "iteration": ctx.iteration, **row,
                                         "chosen": (row["temperature"], row["threshold"]) == (temperature, threshold)}
                                        for row in table])
        best = next(r for r in table if (r["temperature"], r["threshold"]) == (temperature, threshold))
        figures = exploration_exploitation(probes[temperature], threshold)
        return {"temperature": temperature, "threshold": threshold, "balance": best["balance"],
                "grid_size": len(table), **figures}

    def _choice(self, ctx: StageContext) -> dict:
        return ctx.store.stage_summary(ctx.run_id, ctx.iteration, "probe")

    def generate(self, ctx: StageContext) -> dict:
        temperature = self._choice(ctx)["temperature"]
        return {**ctx.sample(ctx.model_dir, "train", ctx.spec(temperature=temperature)), "temperature": temperature}

    def build(self, ctx: StageContext) -> dict:
        threshold = self._choice(ctx)["threshold"]
        queries, groups = probe_queries(ctx, "train")
        selected = select_samples(queries, threshold)
        figures = exploration_exploitation(queries, threshold)
        if ctx.cfg.train.algorithm == "sft":
            rows = [{"run_id": ctx.run_id, "iteration": ctx.iteration, "generation_id": group[i]["generation_id"],
                     "prompt_id": group[i]["prompt_id"], "reward": group[i]["reward"], "created_at": now()}
                    for group, keep in zip(groups, selected) for i in keep]
            ctx.store.append("sft_examples", rows)
            return {"sft_examples": len(rows), "threshold": threshold, **figures}
        return {**self._pairs(ctx, queries, groups, selected), "threshold": threshold, **figures}

    def _pairs(self, ctx: StageContext, queries, groups, selected) -> dict:
        """DPO variant: the best selected sample against the worst sample below the threshold."""
        pairs, drops = [], []
        for query, group, keep in zip(queries, groups, selected):
            below = [i for i in range(len(query)) if i not in keep and query[i].reward != float("-inf")]
            prompt_id = group[0]["prompt_id"]
            if not keep or not below:
                drops.append({"run_id": ctx.run_id, "iteration": ctx.iteration, "prompt_id": prompt_id,
                              "reason": "nothing_selected" if not keep else "nothing_below_threshold"})
                continue
            best = max(keep, key=lambda i: query[i].reward)
            worst = min(below, key=lambda i: query[i].reward)
            as_candidate = lambda i: Candidate(group[i]["generation_id"], i, query[i].text, query[i].reward)  # noqa: E731
            pairs.append(pair_row(ctx.run_id, ctx.iteration, prompt_id, as_candidate(best), as_candidate(worst)))
        return save_pairs(ctx.store, ctx.run_id, ctx.iteration, pairs, drops)

