"""DPO training speed on the seed model, setting by setting, on the same pairs, in one run.

    python benchmarks/training.py [--config configs/demo.yaml] [--pairs 64] [--variants fp32,bf16,...]

Pairs are the demo's shape: the config's training prompts, chosen = the right answer, rejected =
a wrong one (as short as the demo's answers). Each variant trains one epoch from the same seed
model with the config's DPO settings plus its own overrides, and the table says how fast it ran
and whether it learned the same thing: the final loss, and the cosine between its weight update
and the fp32 baseline's (1.0 = the same direction).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from selfimprove.env import apply_defaults

apply_defaults()

from selfimprove.config import load_config  # noqa: E402
from selfimprove.models.loading import chat_prompt_ids, load_model, load_tokenizer, resolve_model  # noqa: E402
from selfimprove.tasks.data import build_splits  # noqa: E402
from selfimprove.tasks.train import dpo_in_process  # noqa: E402

VARIANTS = {
    "fp32": [],
    "bf16": ["train.precision=bf16"],
    "fp32+precompute_ref": ["train.precompute_ref=true"],
    "bf16+precompute_ref": ["train.precision=bf16", "train.precompute_ref=true"],
}


def pairs(cfg, count: int) -> list[dict]:
    rows = build_splits(cfg.data)["train"][:count]
    return [{"prompt_text": r["prompt_text"], "chosen_text": r["answer"], "rejected_text": str(int(r["answer"]) + 1)}
            for r in rows]


def update(seed: dict, model_dir: Path):
    import torch

    trained = dict(load_model(model_dir).named_parameters())
    return torch.cat([(trained[n].detach() - p).flatten() for n, p in seed.items()]).double()


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="demo")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated; repeat one as NAME#2 to see warm-up effects")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    base = load_config(args.config, args.overrides)
    seed_dir = resolve_model(base.model.path, base.data_dir)
    examples = pairs(base, args.pairs)
    tokenizer = load_tokenizer(seed_dir)
    tokens = sum(2 * len(chat_prompt_ids(tokenizer, e["prompt_text"])) for e in examples)
    seed = {n: p.detach().clone() for n, p in load_model(seed_dir).named_parameters()}
    results, baseline = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            cfg = load_config(args.config, [*args.overrides, *VARIANTS[name.split("#")[0]]])
            out = Path(tmp) / name
            started = time.perf_counter()
            stats = dpo_in_process(cfg, seed_dir, out, examples)
            seconds = time.perf_counter() - started
            delta = update(seed, out)
            baseline = delta if baseline is None else baseline
            cosine = float(torch.nn.functional.cosine_similarity(delta, baseline, dim=0))
            results[name] = (seconds, stats, cosine)
            print(f"{name}: {seconds:.1f}s", flush=True)
    first = next(iter(results.values()))[0]
    print(f"\nDPO, {len(examples)} pairs x {base.train.epochs:g} epoch, batch {base.train.batch_size}, "
          f"~{tokens} prompt tokens per pass (x2 sides), torch threads {torch.get_num_threads()}")
    print(f"{'variant':<22}{'seconds':>9}{'x faster':>10}{'steps':>7}{'first loss':>12}{'last loss':>11}"
          f"{'update cos':>12}")
    for name, (seconds, stats, cosine) in results.items():
        print(f"{name:<22}{seconds:>9.1f}{first / seconds:>10.2f}{stats['steps']:>7}{stats['first_loss']:>12.4f}"
              f"{stats['last_loss']:>11.4f}{cosine:>12.4f}")


if __name__ == "__main__":
    main()
