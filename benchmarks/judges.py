"""How well each self-judge separates right from wrong answers, on the same candidates, in one run.

    python benchmarks/judges.py [--config configs/demo.yaml] [--prompts 64] [--n 4] [--set key=value ...]

The seed model samples n answers per training prompt (the config's data, model and sampling), then
judges them with the pointwise logprob judge and with the pairwise judge. Printed per judge: AUC
against the verifiable answers, accuracy of the answer it would pick as chosen (best score) and
as rejected (worst), the share of mixed prompts (some answers right, some wrong) where chosen is
right and rejected wrong, and judging seconds. "sample" is picking an answer at random.
"""
from __future__ import annotations

import argparse
import time

from selfimprove.env import apply_defaults  # noqa: E402

apply_defaults()

from selfimprove.config import load_config  # noqa: E402
from selfimprove.models.engines import SamplingSpec  # noqa: E402
from selfimprove.models.loading import chat_prompt_ids, load_tokenizer, resolve_model  # noqa: E402
from selfimprove.tasks.answers import grade  # noqa: E402
from selfimprove.tasks.common import engine_for  # noqa: E402
from selfimprove.tasks.data import build_splits  # noqa: E402
from selfimprove.tasks.judge import auc, judge_logprob, judge_scorer  # noqa: E402
from selfimprove.tasks.judge_pairwise import judge_groups  # noqa: E402
from selfimprove.tasks.judge_prompt import judge_prompt  # noqa: E402


def picks(groups: list[list[tuple[float, bool]]]) -> dict:
    """Accuracy of the best- and worst-scored answer per prompt, and clean pairs among mixed prompts."""
    best = [max(g, key=lambda sc: sc[0])[1] for g in groups]
    worst = [min(g, key=lambda sc: sc[0])[1] for g in groups]
    mixed = [i for i, g in enumerate(groups) if len({ok for _, ok in g}) == 2]
    clean = sum(1 for i in mixed if best[i] and not worst[i])
    return {"chosen_acc": sum(best) / len(best), "rejected_acc": sum(worst) / len(worst),
            "clean_pairs": clean / len(mixed) if mixed else float("nan"), "mixed": len(mixed)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    model_dir = resolve_model(cfg.model.path, cfg.data_dir)
    tokenizer = load_tokenizer(model_dir)
    prompts = build_splits(cfg.data)["train"][: args.prompts]
    g = cfg.generate
    outputs = engine_for(cfg, model_dir).generate([chat_prompt_ids(tokenizer, p["prompt_text"]) for p in prompts],
                                                  SamplingSpec(args.n, g.temperature, g.top_p, g.max_tokens, cfg.seed))
    texts = [[s.text for s in samples] for samples in outputs]
    correct = [[bool(grade(t, p["answer"], p["source"], p["metadata_json"])[1]) for t in ts]
               for p, ts in zip(prompts, texts)]
    scorer = judge_scorer(cfg, model_dir)

    results = {}
    started = time.perf_counter()
    asks = [judge_prompt(p["question"], t) for p, ts in zip(prompts, texts) for t in ts]
    flat = judge_logprob(scorer, tokenizer, asks)
    scores, it = [], iter(flat)
    for ts in texts:
        scores.append([next(it)[0][1] for _ in ts])
    results["logprob"] = (scores, time.perf_counter() - started)
    started = time.perf_counter()
    verdicts = judge_groups(scorer, tokenizer, [(p["question"], ts) for p, ts in zip(prompts, texts)])
    results["pairwise"] = ([[score for _, score in v] for v in verdicts], time.perf_counter() - started)

    right = sum(map(sum, correct)) / sum(map(len, correct))
    print(f"\n{cfg.model.path}: {len(prompts)} prompts x {args.n} answers (T={g.temperature}), "
          f"{right:.3f} of answers right")
    print(f"{'judge':<10}{'auc':>7}{'chosen_acc':>12}{'rejected_acc':>14}{'clean_pairs':>13}{'seconds':>9}")
    print(f"{'sample':<10}{0.5:>7.3f}{right:>12.3f}{right:>14.3f}{'-':>13}{'-':>9}")
    for name, (scores, seconds) in results.items():
        labelled = [(s, ok) for ss, oks in zip(scores, correct) for s, ok in zip(ss, oks) if s is not None]
        p = picks([list(zip(ss, oks)) for ss, oks in zip(scores, correct)])
        print(f"{name:<10}{auc(labelled):>7.3f}{p['chosen_acc']:>12.3f}{p['rejected_acc']:>14.3f}"
              f"{p['clean_pairs']:>13.3f}{seconds:>9.1f}")
    print(f"(clean_pairs: of {p['mixed']} prompts with both right and wrong answers, the share where the judge's "
          "best is right and its worst wrong)")


if __name__ == "__main__":
    main()
