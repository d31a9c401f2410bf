"""Stage 1: sample n candidates per prompt from the current model; every sample becomes a row.

Resumable: prompts that already have all their samples in DuckDB are skipped, and a chunk is
written as soon as it is generated. Each prompt's samples are drawn with a seed derived from
(config seed, iteration, purpose, prompt id), so a resumed stage samples what an uninterrupted
one would have, whatever was left to do.
"""
from __future__ import annotations

import time
from pathlib import Path

from selfimprove.models.engines import SamplingSpec, resolve_engine_name
from selfimprove.models.loading import chat_prompt_ids, load_tokenizer, model_hash
from selfimprove.storage.db import Store
from selfimprove.storage.records import Generation, Prompt
from selfimprove.tasks.answers import grade
from selfimprove.tasks.common import content_seed, crash_point, engine_for, progress
from selfimprove.tasks.results import GenerateResult


def generation_id(run_id: str, iteration: int, purpose: str, prompt_id: str, sample_index: int) -> str:
    return f"{run_id}:{iteration}:{purpose}:{prompt_id}:{sample_index}"


def generate_samples(store: Store, cfg, run_id: str, iteration: int, model_dir: str | Path, prompts: list[Prompt],
                     spec: SamplingSpec, purpose: str) -> GenerateResult:
    """Generate spec.n samples for each prompt with the model in model_dir."""
    label = f"generate-{purpose}-{iteration}"
    have = store.sample_counts(run_id, iteration, purpose)
    todo = [p for p in prompts if have.get(p.prompt_id, 0) < spec.n]
    tokenizer = load_tokenizer(model_dir)
    digest = model_hash(model_dir)
    started = time.perf_counter()
    ids = [chat_prompt_ids(tokenizer, p.prompt_text) for p in todo]
    seeds = [content_seed(spec.seed, iteration, purpose, p.prompt_id) for p in todo]
    if cfg.engine.workers > 1 or cfg.engine.dask_address:
        from selfimprove.tasks.fanout import generate_chunks

        engine_name = resolve_engine_name(cfg.engine.name)
        size = cfg.engine.write_every
        jobs = [(ids[i:i + size], seeds[i:i + size]) for i in range(0, len(todo), size)]
        finished = ((start + k, samples) for start, outputs in zip(range(0, len(todo), size),
                                                                    generate_chunks(cfg, model_dir, jobs, spec, label))
                    for k, samples in enumerate(outputs))
    else:
        # The engine gets the whole stage at once (large batches); rows are still written every
        # `engine.write_every` finished prompts, so a crash loses at most that much.
        engine = engine_for(cfg, model_dir)
        engine_name = engine.name
        size = cfg.engine.batch_prompts or max(len(todo), 1)
        finished = ((start + k, samples) for start in range(0, len(todo), size)
                    for k, samples in engine.stream(ids[start:start + size], spec, seeds[start:start + size]))
    rows: list[Generation] = []
    for done, (index, samples) in enumerate(finished, start=1):
        prompt = todo[index]
        for k, sample in enumerate(samples):
            answer, correct = grade(sample.text, prompt.answer, prompt.source, prompt.metadata_json)
            rows.append(Generation(
                generation_id(run_id, iteration, purpose, prompt.prompt_id, k), run_id, iteration, purpose,
                prompt.prompt_id, k, str(model_dir), digest, engine_name, spec.temperature, sample.text,
                sample.token_ids, sample.logprobs, sample.finish_reason, len(sample.token_ids), answer, correct))
        if done % cfg.engine.write_every == 0 or done == len(todo):
            store.add(rows)
            rows = []
            progress(f"generate[{purpose}]", iteration, done, len(todo), started)
            crash_point(f"generate_{purpose}", iteration)
    rows = store.generations(run_id, iteration, purpose)
    tokens = sum(r.num_tokens for r in rows)
    return GenerateResult(samples=len(rows), prompts=len(prompts), resumed_prompts=len(prompts) - len(todo),
                          mean_tokens=tokens / max(len(rows), 1), engine=engine_name,
                          tokens_per_s=tokens / max(time.perf_counter() - started, 1e-9) if todo else None,
                          temperature=spec.temperature)
