"""B-STaR (Zeng et al. 2024): before sampling, probe several temperatures on a subset of the
training prompts, score the probe samples with the configured reward, and pick the
(temperature, reward threshold) with the best balance score. The iteration then samples at that
temperature and keeps the samples whose reward clears that threshold: as SFT targets (the
paper's choice), or with `train.algorithm: dpo` as chosen answers against a candidate below it.
With `pairs.chosen_must_answer` a sample with no extracted answer (or blank text) is never selected.

"Correct" for the balance score comes from the verifiable answer; prompts without one count as
not correct (see tasks/bstar.py). The whole grid and the exploration / exploitation figures of
the chosen configuration land in DuckDB (`bstar_grid`, ledger) and MLflow (`probe/*`).
"""
from __future__ import annotations

from dataclasses import asdict

from selfimprove.methods.base import Method, StageContext
from selfimprove.storage.records import BstarGridRow, Candidate, PairDrop, SftExample
from selfimprove.tasks.bstar import (
    ProbeSample,
    default_thresholds,
    exploration_exploitation,
    grid_search,
    kept_share,
    select_samples,
)
from selfimprove.tasks.build import Ranked, pair_row, save_pairs
from selfimprove.tasks.common import log
from selfimprove.tasks.results import BStarBuildResult, ExplorationFigures, GenerateResult, ProbeResult

UNSCORED = float("-inf")  # a sample without a combined reward: never selected, never paired


def probe_purpose(temperature: float) -> str:
    return f"probe_t{temperature:g}"


def probe_queries(ctx: StageContext, purpose: str) -> tuple[list[list[ProbeSample]], list[list[Candidate]]]:
    """Samples of one purpose grouped per prompt, as ProbeSamples and as the candidate records."""
    groups: dict[str, list[Candidate]] = {}
    for c in ctx.store.candidates(ctx.run_id, ctx.iteration, [purpose]):
        groups.setdefault(c.prompt_id, []).append(c)
    queries = [[ProbeSample(c.text, c.extracted_answer, UNSCORED if c.reward is None else c.reward, c.correct)
                for c in group] for group in groups.values()]
    return queries, list(groups.values())


def dpo_pair(query: list[ProbeSample], keep: list[int], threshold: float) -> tuple[int, int] | str:
    """DPO variant: (chosen, rejected) indices, the best selected sample against the worst sample
    below the threshold whose text differs from the chosen's; or why there is no pair. A sample
    left out of `keep` only as a duplicate of a kept one is not "below": pairing it would make
    chosen and rejected the same text.

    >>> s = lambda t, r: ProbeSample(t, None, r, None)
    >>> dpo_pair([s("7", 1.0), s("7", 0.6), s("8", 0.1)], [0], 0.5)
    (0, 2)
    >>> dpo_pair([s("7", 1.0), s(" 7", 0.6)], [0], 0.5)
    'nothing_below_threshold'
    """
    if not keep:
        return "nothing_selected"
    best = max(keep, key=lambda i: query[i].reward)
    below = [i for i, sample in enumerate(query) if sample.reward != UNSCORED and sample.reward < threshold
             and sample.text.strip() != query[best].text.strip()]
    if not below:
        return "nothing_below_threshold"
    return best, min(below, key=lambda i: query[i].reward)


class BStar(Method):
    name = "bstar"

    def stages(self, cfg) -> tuple[str, ...]:
        base = super().stages(cfg)  # its probe of temperatures and thresholds comes right before generating
        return (*base[:base.index("generate")], "probe", *base[base.index("generate"):])

    def probe(self, ctx: StageContext) -> ProbeResult:
        mc = ctx.cfg.method
        prompts = ctx.store.prompts(ctx.run_id, "train")[: mc.probe_prompts]
        purposes = tuple(probe_purpose(t) for t in mc.temperatures)
        for temperature, purpose in zip(mc.temperatures, purposes):
            ctx.sample(ctx.model_dir, purpose, ctx.spec(n=mc.probe_samples, temperature=temperature), prompts)
        ctx.judge(purposes)
        ctx.score(purposes)
        probes = {t: probe_queries(ctx, p)[0] for t, p in zip(mc.temperatures, purposes)}
        observed = [s.reward for qs in probes.values() for q in qs for s in q if s.reward != UNSCORED]
        thresholds = mc.thresholds or default_thresholds(observed) or [0.0]
        (temperature, threshold), table = grid_search(probes, thresholds, mc.n_star)
        ctx.store.add([BstarGridRow(ctx.run_id, ctx.iteration, row["temperature"], row["threshold"], row["balance"],
                                    row["selected_per_query"], row["precision"],
                                    (row["temperature"], row["threshold"]) == (temperature, threshold))
                       for row in table])
        best = next(r for r in table if (r["temperature"], r["threshold"]) == (temperature, threshold))
        figures = exploration_exploitation(probes[temperature], threshold)
        share = kept_share(probes[temperature], threshold)
        if share == 1.0 and len(set(observed)) > 1:
            # The balance score preferred no filter at all: with a reward that does not separate right from
            # wrong (a judge at chance), B-STaR is then plain self-distillation at the chosen temperature.
            log.warning("iteration %d: B-STaR's best threshold %.3f keeps every probe sample: the reward filters "
                        "nothing (check the judge's probe AUC, or use a verifiable reward)", ctx.iteration, threshold)
        return ProbeResult(temperature=temperature, threshold=threshold, balance=best["balance"],
                           grid_size=len(table), kept_share=share, **figures)

    def _choice(self, ctx: StageContext) -> BstarGridRow:
        choice = ctx.store.bstar_choice(ctx.run_id, ctx.iteration)
        if choice is None:
            raise RuntimeError(f"run {ctx.run_id} iteration {ctx.iteration}: no B-STaR choice recorded (probe stage)")
        return choice

    def generate(self, ctx: StageContext) -> GenerateResult:
        return ctx.sample(ctx.model_dir, "train", ctx.spec(temperature=self._choice(ctx).temperature))

    def build(self, ctx: StageContext) -> BStarBuildResult:
        threshold = self._choice(ctx).threshold
        queries, groups = probe_queries(ctx, "train")
        must_answer = ctx.cfg.pairs.chosen_must_answer
        selected = select_samples(queries, threshold, require_answer=must_answer)
        figures = ExplorationFigures(**exploration_exploitation(queries, threshold))
        if ctx.cfg.train.algorithm == "sft":
            rows = [SftExample(ctx.run_id, ctx.iteration, group[i].generation_id, group[i].prompt_id, group[i].reward)
                    for group, keep in zip(groups, selected) for i in keep]
            ctx.store.add(rows)
            return BStarBuildResult(sft_examples=len(rows), threshold=threshold, **asdict(figures))
        pairs, drops = [], []
        for query, group, keep in zip(queries, groups, selected):
            result = dpo_pair(query, keep, threshold)
            if result == "nothing_selected" and must_answer and any(s.reward >= threshold for s in query):
                result = "no_answered_candidate"  # samples cleared the threshold, none with an answer
            if isinstance(result, str):
                drops.append(PairDrop(ctx.run_id, ctx.iteration, group[0].prompt_id, result))
                continue
            chosen, rejected = (Ranked(group[i].generation_id, i, query[i].text, query[i].reward) for i in result)
            pairs.append(pair_row(ctx.run_id, ctx.iteration, group[0].prompt_id, chosen, rejected))
        built = save_pairs(ctx.store, ctx.run_id, ctx.iteration, pairs, drops)
        return BStarBuildResult(**asdict(built), threshold=threshold, **asdict(figures))
