"""DuckDB store on a real file: round trips, idempotent re-writes, the ledger, the views."""
from storage.db import Store, now


def gen(i, **over):
    row = {"generation_id": f"r:1:train:p0:{i}", "run_id": "r", "iteration": 1, "purpose": "train", "prompt_id": "p0",
           "sample_index": i, "model_path": "/m", "model_hash": "h", "engine": "vllm", "temperature": 0.8,
           "text": f"answer {i}", "token_ids": [1, 2, 3], "logprobs": [-0.1, -0.2, -0.3], "finish_reason": "stop",
           "num_tokens": 3, "extracted_answer": str(i), "correct": i == 0, "created_at": now()}
    row.update(over)
    return row


def test_round_trip_and_idempotent_append(tmp_path):
    store = Store(tmp_path / "p.duckdb")
    assert store.append("generations", [gen(0), gen(1)]) == 2
    # The same keys again (even with other text, as a redone stage would produce) add nothing.
    assert store.append("generations", [gen(0, text="changed"), gen(1), gen(2)]) == 1
    rows = store.generations("r", 1, "train")
    assert [r["sample_index"] for r in rows] == [0, 1, 2]
    assert rows[0]["text"] == "answer 0" and rows[0]["token_ids"] == [1, 2, 3]
    assert rows[0]["logprobs"] == [-0.1, -0.2, -0.3] and rows[0]["correct"] is True
    # A reopened file sees the same rows.
    assert len(Store(tmp_path / "p.duckdb").generations("r", 1, "train")) == 3


def test_stage_ledger_and_parameterised_queries(tmp_path):
    store = Store(tmp_path / "p.duckdb")
    assert store.stage_summary("r", 1, "judge") is None
    store.mark_stage_done("r", 1, "judge", 1.5, {"auc": 0.5})
    store.mark_stage_done("r", 1, "judge", 9.9, {"auc": 0.9})  # a second write changes nothing
    assert store.stage_summary("r", 1, "judge") == {"auc": 0.5}
    hostile = "x' OR '1'='1"
    assert store.query("SELECT * FROM stage_ledger WHERE run_id = ?", [hostile]) == []


def test_views_join_pairs_to_texts(tmp_path):
    store = Store(tmp_path / "p.duckdb")
    store.append("prompts", [{"run_id": "r", "prompt_id": "p0", "split": "train", "source": "jsonl",
                              "question": "1+1?", "answer": "2", "prompt_text": "1+1?", "metadata_json": "{}"}])
    store.append("generations", [gen(0), gen(1)])
    store.append("pairs", [{"pair_id": "r:1:p0", "run_id": "r", "iteration": 1, "prompt_id": "p0",
                            "chosen_generation_id": "r:1:train:p0:0", "rejected_generation_id": "r:1:train:p0:1",
                            "chosen_score": 4.0, "rejected_score": 1.0, "margin": 3.0, "created_at": now()}])
    lineage = store.query("SELECT * FROM pair_lineage")
    assert lineage[0]["chosen"] == "answer 0" and lineage[0]["rejected"] == "answer 1"
    assert lineage[0]["chosen_correct"] is True and lineage[0]["question"] == "1+1?"
    assert store.pairs("r", 1)[0]["chosen_text"] == "answer 0"
