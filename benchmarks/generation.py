"""Generation throughput of the two engines on the same prompts, in one run.

    python benchmarks/generation.py [--model embedded:smollm2-135m-instruct] [--prompts 64] [--n 4]

Prints a table: engine, startup seconds, generated tokens, seconds, tokens/s, and the ratio to
the transformers engine. The transformers engine runs first: vLLM pins OpenMP threads for the
rest of the process. Both use the model's dtype from --dtype (bf16 default, as the demo).
"""
from __future__ import annotations

import argparse
import time

from selfimprove.env import apply_defaults  # noqa: E402

apply_defaults()

from selfimprove.config import DataConfig  # noqa: E402
from selfimprove.models.engines import HfEngine, SamplingSpec  # noqa: E402
from selfimprove.models.loading import chat_prompt_ids, load_tokenizer, resolve_model  # noqa: E402
from selfimprove.models.vllm_engine import VllmEngine  # noqa: E402
from selfimprove.tasks.data import build_splits  # noqa: E402


def measure(make_engine, prompts, spec) -> dict:
    started = time.perf_counter()
    engine = make_engine()
    startup = time.perf_counter() - started
    engine.generate(prompts[:2], SamplingSpec(1, spec.temperature, spec.top_p, 4, 0))  # warm-up
    started = time.perf_counter()
    outputs = engine.generate(prompts, spec)
    seconds = time.perf_counter() - started
    tokens = sum(len(s.token_ids) for samples in outputs for s in samples)
    engine.close()
    return {"startup_s": startup, "tokens": tokens, "seconds": seconds, "tok_per_s": tokens / seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--hf-batch", type=int, default=16)
    args = parser.parse_args()

    model_dir = resolve_model(args.model, args.data_dir)
    tokenizer = load_tokenizer(model_dir)
    data = build_splits(DataConfig(train_size=args.prompts, eval_size=0, task_args={
        "min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, "operators": ["+", "-"]}))["train"]
    # The step-by-step prompt, so that answers are long enough to measure decoding, not prefill.
    prompts = [chat_prompt_ids(tokenizer, row["question"] + "\nThink step by step, then give the final answer.")
               for row in data]
    spec = SamplingSpec(n=args.n, temperature=0.8, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    rows = {"transformers": measure(lambda: HfEngine(str(model_dir), args.dtype, 0, args.hf_batch), prompts, spec),
            "vllm": measure(lambda: VllmEngine(str(model_dir), args.dtype, 2048, 0), prompts, spec)}
    base = rows["transformers"]["tok_per_s"]
    print(f"\n{args.model}: {args.prompts} prompts x n={args.n}, <= {args.max_tokens} tokens, T=0.8, {args.dtype}")
    print(f"{'engine':<13}{'startup_s':>10}{'tokens':>8}{'seconds':>9}{'tok/s':>8}{'ratio':>7}")
    for name, r in rows.items():
        print(f"{name:<13}{r['startup_s']:>10.1f}{r['tokens']:>8}{r['seconds']:>9.1f}{r['tok_per_s']:>8.1f}"
              f"{r['tok_per_s'] / base:>7.2f}")


if __name__ == "__main__":
    main()
