"""Prompt sources: disjoint splits, file sources, clear errors on bad records, GSM8K from the wheel."""
import json

import pytest

from selfimprove.config import DataConfig
from selfimprove.tasks.data import DataError, build_eval_only, build_splits


def test_reasoning_gym_splits_are_disjoint_and_verifiable():
    cfg = DataConfig(train_size=40, eval_size=60, task_args={"min_terms": 2, "max_terms": 2, "min_digits": 1,
                                                              "max_digits": 1})
    splits = build_splits(cfg)
    train_q = {r["question"] for r in splits["train"]}
    assert len(splits["train"]) == 40 and len(splits["heldout"]) == 60
    assert not train_q & {r["question"] for r in splits["heldout"]}
    assert all(r["answer"] is not None and r["question"] in r["prompt_text"] for r in splits["train"])
    assert build_splits(cfg) == splits  # seeded: the same config gives the same prompts


def test_reasoning_gym_redraws_reach_new_questions():
    # 1-digit +/- has 242 distinct questions; one draw of 2 x 236 finds ~214 of them, so the split fills
    # only if each redraw brings new items (reasoning-gym seeds item i with seed + i).
    one_digit = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+", "-"],
                 "allow_parentheses": False, "allow_negation": False}
    cfg = DataConfig(train_size=236, eval_size=2, task_args=one_digit)
    splits = build_splits(cfg)
    assert len({r["question"] for r in splits["train"]}) == 236 and len(splits["heldout"]) == 2


def test_jsonl_source_with_duplicates_and_custom_fields(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"q": f"What is {i} + 1?", "a": i + 1} for i in range(10)] + [{"q": "What is 0 + 1?", "a": 1}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = DataConfig(source="jsonl", path=str(path), question_field="q", answer_field="a", train_size=4, eval_size=6)
    splits = build_splits(cfg)
    assert len(splits["train"]) == 4 and len(splits["heldout"]) == 6
    assert not {r["question"] for r in splits["train"]} & {r["question"] for r in splits["heldout"]}


def test_bad_jsonl_record_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "ok?"}\n{"prompt": "no question field"}\n')
    with pytest.raises(DataError, match=r"record 2 has no string field 'question'"):
        build_splits(DataConfig(source="jsonl", path=str(path), train_size=1, eval_size=1))
    path.write_text('{"question": "ok?"}\nnot json\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: not valid JSON"):
        build_splits(DataConfig(source="jsonl", path=str(path), train_size=1, eval_size=1))


def test_bad_reasoning_gym_task_is_named():
    with pytest.raises(DataError, match="data.task"):
        build_splits(DataConfig(task="no_such_task", train_size=2, eval_size=2))


def test_gsm8k_test_set_from_wheel():
    rows = build_eval_only(DataConfig(source="gsm8k", eval_size=1319), "gsm8k")
    assert len(rows) == 1319 and rows[0]["answer"] == "18" and "Janet" in rows[0]["question"]


def test_parquet_and_saved_dataset_sources(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": f"What is {i} * 2?", "answer": str(2 * i)} for i in range(8)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    for source, path in (("parquet", tmp_path / "d.parquet"), ("hf_disk", tmp_path / "saved")):
        splits = build_splits(DataConfig(source=source, path=str(path), train_size=5, eval_size=3))
        assert len(splits["train"]) == 5 and len(splits["heldout"]) == 3
        got = {r["question"]: r["answer"] for r in splits["train"] + splits["heldout"]}
        assert got == {r["question"]: r["answer"] for r in rows}
