"""Stage 1: sample n candidates per prompt from the current model; every sample becomes a row.

Resumable: prompts that already have all their samples in DuckDB are skipped, and a chunk is
written as soon as it is generated.
"""
from __future__ import annotations

import time
from pathlib import Path

from models.engines import SamplingSpec, resolve_engine_name
from models.loading import chat_prompt_ids, load_tokenizer, model_hash
from storage.db import Store, now
from tasks.answers import extract_answer, is_correct
from tasks.common import chunks, crash_point, engine_for, progress


def generation_id(run_id: str, iteration: int, purpose: str, prompt_id: str, sample_index: int) -> str:
    return f"{run_id}:{iteration}:{purpose}:{prompt_id}:{sample_index}"


def generate_samples(store: Store, cfg, run_id: str, iteration: int, model_dir: str | Path, prompts: list[dict],
                     spec: SamplingSpec, purpose: str) -> dict:
    """Generate spec.n samples for each prompt with the model in model_dir; return a summary."""
    have = {r["prompt_id"]: r["n"] for r in store.query(
        "SELECT prompt_id, count(*) AS n FROM generations WHERE run_id = ? AND iteration = ? AND purpose = ? "
        "GROUP BY prompt_id", [run_id, iteration, purpose])}
    todo = [p for p in prompts if have.get(p["prompt_id"], 0) < spec.n]
    tokenizer = load_tokenizer(model_dir)
    digest = model_hash(model_dir)
    started = time.perf_counter()
    batches = list(chunks(todo, cfg.engine.write_every))
    jobs = [([chat_prompt_ids(tokenizer, p["prompt_text"]) for p in batch],
             SamplingSpec(spec.n, spec.temperature, spec.top_p, spec.max_tokens, spec.seed + iteration * 7919 + done))
            for done, batch in enumerate(batches, start=1)]
    if cfg.engine.workers > 1 or cfg.engine.dask_address:
        from tasks.fanout import generate_chunks

        engine_name = resolve_engine_name(cfg.engine.name)
        results = generate_chunks(cfg, model_dir, jobs, f"generate-{purpose}-{iteration}")
    else:
        engine = engine_for(cfg, model_dir)
        engine_name = engine.name
        results = (engine.generate(ids, chunk_spec) for ids, chunk_spec in jobs)
    for done, (batch, outputs) in enumerate(zip(batches, results), start=1):
        rows = []
        for prompt, samples in zip(batch, outputs):
            for index, sample in enumerate(samples):
                answer = extract_answer(sample.text)
                rows.append({
                    "generation_id": generation_id(run_id, iteration, purpose, prompt["prompt_id"], index),
                    "run_id": run_id, "iteration": iteration, "purpose": purpose, "prompt_id": prompt["prompt_id"],
                    "sample_index": index, "model_path": str(model_dir), "model_hash": digest, "engine": engine_name,
                    "temperature": spec.temperature, "text": sample.text, "token_ids": sample.token_ids,
                    "logprobs": sample.logprobs, "finish_reason": sample.finish_reason,
                    "num_tokens": len(sample.token_ids), "extracted_answer": answer,
                    "correct": is_correct(answer, prompt["answer"], prompt["source"], prompt["metadata_json"]),
                    "created_at": now()})
        store.append("generations", rows)
        progress(f"generate[{purpose}]", iteration, min(done * cfg.engine.write_every, len(todo)), len(todo), started)
        crash_point(f"generate_{purpose}", iteration)
    rows = store.generations(run_id, iteration, purpose)
    tokens = sum(r["num_tokens"] for r in rows)
    return {"samples": len(rows), "prompts": len(prompts), "resumed_prompts": len(prompts) - len(todo),
            "mean_tokens": tokens / max(len(rows), 1), "engine": engine_name,
            "tokens_per_s": tokens / max(time.perf_counter() - started, 1e-9) if todo else None}
