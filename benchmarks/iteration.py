"""One demo iteration, stage by stage: seconds, forward-token work and share of the machine's
ceiling, for the settings before and after the speed work, side by side in one run; then the same
iteration's work as a plain script (no Prefect, DuckDB or MLflow) for the orchestration overhead.

    python benchmarks/iteration.py [--config demo] [--variants before,after] [--plain] [--stamp STAMP]
                                   [--set key=value ...]

Each variant is a real pipeline run (iteration 0 evaluates the seed and starts the engine; the
table is iteration 1). "before" is the previous settings, still selectable by config: judging in a
transformers pass, fp32 training with a reference forward each step, 32 prompts per engine call.
The ceiling is a bf16 matmul measured first in this process (before vLLM pins its threads):
tokens/s at the ceiling = FLOP/s / (2 x parameters). Forward-token work per stage, from the
records: generate = prompt + generated tokens; judge = judge prompt tokens; train = (prompt +
answer) tokens of both sides x 4 (policy forward + backward ~3, reference 1) x epochs; evaluate =
prompt + generated tokens (greedy and sampled). Re-run with --stamp to resume an interrupted run.
"""
from __future__ import annotations

import argparse
import time

from selfimprove.env import apply_defaults

apply_defaults()

from selfimprove.config import load_config  # noqa: E402

VARIANTS = {
    "before": ["judge.backend=transformers", "train.precision=fp32", "train.precompute_ref=false",
               "engine.batch_prompts=32"],
    "after": [],  # the shipped defaults
}
STAGES = ["generate", "judge", "score", "build", "train", "evaluate", "track", "gate"]


def matmul_ceiling(seconds: float = 3.0) -> float:
    """bf16 GFLOP/s of a large square matmul on this process's threads."""
    import torch

    a = torch.randn(2048, 2048, dtype=torch.bfloat16)
    b = torch.randn(2048, 2048, dtype=torch.bfloat16)
    a @ b  # warm up
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        runs += 1
    return runs * 2 * 2048 ** 3 / (time.perf_counter() - started) / 1e9


def stage_tokens(store, cfg, run_id: str, iteration: int, tokenizer) -> dict[str, int]:
    """Forward-token equivalents of each stage of one iteration, from its records."""
    from selfimprove.models.loading import chat_prompt_ids
    from selfimprove.tasks.judge_prompt import SCORE_PREFIX, judge_prompt

    prompt_len = {}
    for split in ("train", "heldout"):
        for p in store.prompts(run_id, split):
            prompt_len[p.prompt_id] = len(chat_prompt_ids(tokenizer, p.prompt_text))

    def sampled(purpose: str) -> int:
        rows = store.generations(run_id, iteration, purpose)
        return sum(prompt_len[p] for p in {r.prompt_id for r in rows}) + sum(r.num_tokens for r in rows)

    candidates = store.candidates(run_id, iteration, ["train"])
    judge = sum(len(chat_prompt_ids(tokenizer, judge_prompt(c.question, c.text), SCORE_PREFIX)) for c in candidates)
    pairs = store.pair_texts(run_id, iteration)
    answer = {c.generation_id: len(c.token_ids) for c in candidates}
    train = sum(2 * prompt_len[p.prompt_id] + answer[p.chosen_generation_id] + answer[p.rejected_generation_id]
                for p in pairs) * 4 * cfg.train.epochs
    return {"generate": sampled("train"), "judge": judge, "train": int(train),
            "evaluate": sampled("eval_greedy") + sampled("eval_sample")}


def run_variant(name: str, args, stamp: str) -> dict:
    from selfimprove.flows.pipeline import selfimprove_run
    from selfimprove.models.engines import close_engine
    from selfimprove.models.loading import load_tokenizer
    from selfimprove.tasks.common import store_for

    cfg = load_config(args.config, ["iterations=1", "project=iteration-bench", *VARIANTS[name], *args.overrides])
    run_id = f"{name}-{stamp}"
    started = time.perf_counter()
    selfimprove_run(config=cfg.to_dict(), run_id=run_id)
    wall = time.perf_counter() - started
    close_engine()  # the next variant starts its engine as a run does
    store = store_for(cfg)
    ledger = {e.stage: e.seconds for e in store.ledger(run_id) if e.iteration == 1}
    tokens = stage_tokens(store, cfg, run_id, 1, load_tokenizer(store.run(run_id).seed_model))
    return {"seconds": ledger, "tokens": tokens, "wall": wall, "cfg": cfg, "run_id": run_id}


def print_table(results: dict, ceiling: float, params: int) -> None:
    tok_s = ceiling * 1e9 / (2 * params)
    names = list(results)
    print(f"\nceiling: {ceiling:.0f} GFLOP/s bf16 matmul = {tok_s:.0f} tokens/s for {params / 1e6:.1f}M parameters")
    head = f"{'stage':<10}{'tokens':>9}" + "".join(f"{n + ' s':>12}{n + ' %ceil':>14}" for n in names)
    print(head)
    for stage in STAGES:
        tokens = results[names[-1]]["tokens"].get(stage, 0)
        cells = ""
        for n in names:
            sec = results[n]["seconds"].get(stage)
            share = tokens / sec / tok_s * 100 if sec and tokens else None
            cells += f"{'-' if sec is None else f'{sec:.1f}':>12}{'-' if share is None else f'{share:.1f}':>14}"
        print(f"{stage:<10}{tokens:>9}{cells}")
    totals = "".join(f"{sum(results[n]['seconds'].get(s, 0) for s in STAGES):>12.1f}{'':>14}" for n in names)
    print(f"{'iteration':<10}{sum(results[names[-1]]['tokens'].values()):>9}{totals}")


def pipeline_iteration_seconds(run_id: str) -> float | None:
    """Wall time of the run's iteration-1 subflow as Prefect recorded it (all orchestration included)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[
            f"{run_id}-iteration-1"])))
    done = [r for r in runs if r.start_time and r.end_time]
    return (done[-1].end_time - done[-1].start_time).total_seconds() if done else None


def plain_iteration(cfg) -> dict[str, float]:
    """The same iteration with the same libraries and settings, as a plain script: no Prefect, no
    DuckDB, no MLflow. Iteration 0 (the seed's evaluation, which starts the engine) is not timed."""
    import tempfile

    from selfimprove.models.engines import SamplingSpec, close_engine
    from selfimprove.models.loading import chat_prompt_ids, load_tokenizer, resolve_model
    from selfimprove.tasks.answers import grade
    from selfimprove.tasks.build import Ranked, select_pair
    from selfimprove.tasks.common import content_seed, engine_for
    from selfimprove.tasks.data import build_splits
    from selfimprove.tasks.judge import judge_logprob, judge_scorer
    from selfimprove.tasks.judge_prompt import judge_prompt
    from selfimprove.tasks.train import dpo_in_process

    seed_dir = resolve_model(cfg.model.path, cfg.data_dir)
    tokenizer = load_tokenizer(seed_dir)
    splits = build_splits(cfg.data)
    train, heldout = splits["train"], splits["heldout"]
    train_ids = [chat_prompt_ids(tokenizer, p["prompt_text"]) for p in train]
    eval_ids = [chat_prompt_ids(tokenizer, p["prompt_text"]) for p in heldout]
    g, e = cfg.generate, cfg.eval
    spec = SamplingSpec(g.n, g.temperature, g.top_p, g.max_tokens, cfg.seed)
    greedy = SamplingSpec(1, 0.0, 1.0, e.max_tokens, cfg.seed)
    sampled = SamplingSpec(e.k, e.temperature, 1.0, e.max_tokens, cfg.seed)

    def evaluate(engine, iteration: int) -> None:
        for samples, p in zip(engine.generate(eval_ids, greedy), heldout):
            grade(samples[0].text, p["answer"], p["source"], p["metadata_json"])
        seeds = [content_seed(cfg.seed, iteration, "eval_sample", i) for i in range(len(heldout))]
        for samples, p in zip(engine.generate(eval_ids, sampled, seeds), heldout):
            [grade(s.text, p["answer"], p["source"], p["metadata_json"]) for s in samples]

    close_engine()
    evaluate(engine_for(cfg, seed_dir), 0)  # iteration 0: starts the engine, untimed
    times: dict[str, float] = {}
    started = time.perf_counter()
    engine = engine_for(cfg, seed_dir)
    seeds = [content_seed(cfg.seed, 1, "train", i) for i in range(len(train))]
    outputs = engine.generate(train_ids, spec, seeds)
    times["generate"] = time.perf_counter() - started
    mark = time.perf_counter()
    asks = [judge_prompt(p["question"], s.text) for p, samples in zip(train, outputs) for s in samples]
    flat = iter(judge_logprob(judge_scorer(cfg, seed_dir), tokenizer, asks))
    times["judge"] = time.perf_counter() - mark
    mark = time.perf_counter()
    examples = []
    for p, samples in zip(train, outputs):
        ranked = [Ranked(str(k), k, s.text, next(flat)[0][1]) for k, s in enumerate(samples)]
        pair = select_pair(ranked, cfg.pairs.min_margin)
        if not isinstance(pair, str):
            examples.append({"prompt_text": p["prompt_text"], "chosen_text": pair[0].text,
                             "rejected_text": pair[1].text})
    times["build"] = time.perf_counter() - mark
    with tempfile.TemporaryDirectory() as tmp:
        mark = time.perf_counter()
        dpo_in_process(cfg, seed_dir, f"{tmp}/model", examples)
        times["train"] = time.perf_counter() - mark
        mark = time.perf_counter()
        evaluate(engine_for(cfg, f"{tmp}/model"), 1)
        times["evaluate"] = time.perf_counter() - mark
    times["iteration"] = time.perf_counter() - started
    close_engine()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="demo")
    parser.add_argument("--variants", default="before,after")
    parser.add_argument("--plain", action="store_true", help="also run the last variant as a plain script")
    parser.add_argument("--stamp", default=None, help="resume the runs of an earlier invocation")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    import logging

    from selfimprove.models.loading import load_model
    from selfimprove.tasks.common import store_for

    logging.getLogger("selfimprove").setLevel(logging.INFO)
    stamp = args.stamp or time.strftime("%Y%m%d-%H%M%S")
    print(f"benchmark stamp {stamp} (resume with --stamp {stamp})", flush=True)
    ceiling = matmul_ceiling()
    results = {name: run_variant(name, args, stamp) for name in args.variants.split(",")}
    last = results[list(results)[-1]]
    seed_dir = store_for(last["cfg"]).run(last["run_id"]).seed_model
    print_table(results, ceiling, sum(p.numel() for p in load_model(seed_dir).parameters()))
    if args.plain:
        plain = plain_iteration(last["cfg"])
        pipeline = pipeline_iteration_seconds(last["run_id"])
        print(f"\nplain script, same work and settings as '{list(results)[-1]}': "
              + ", ".join(f"{k} {v:.1f}s" for k, v in plain.items()))
        if pipeline:
            print(f"pipeline iteration (Prefect subflow wall time) {pipeline:.1f}s vs plain {plain['iteration']:.1f}s: "
                  f"orchestration overhead {(pipeline - plain['iteration']) / plain['iteration'] * 100:+.1f}%")


if __name__ == "__main__":
    main()
