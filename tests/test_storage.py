"""DuckDB store on a real file: typed round trips, idempotent re-writes, the ledger, the views."""
import dataclasses

import pytest

from selfimprove.storage.db import Store
from selfimprove.storage.records import (
    TABLE_OF,
    Evaluation,
    Generation,
    Iteration,
    IterationSummary,
    LedgerEntry,
    Pair,
    Prompt,
    TrainRun,
    columns,
)


def gen(i, **over):
    row = Generation(f"r:1:train:p0:{i}", "r", 1, "train", "p0", i, "/m", "h", "vllm", 0.8, f"answer {i}", [1, 2, 3],
                     [-0.1, -0.2, -0.3], "stop", 3, str(i), i == 0)
    return dataclasses.replace(row, **over)


def test_every_record_type_matches_its_table(tmp_path):
    store = Store(tmp_path / "p.duckdb")
    for kind, table in TABLE_OF.items():
        have = [r["column_name"] for r in store.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            [table])]
        assert have == columns(kind), table
    view = [r["column_name"] for r in store.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'iteration_summary' "
        "ORDER BY ordinal_position")]
    assert view == columns(IterationSummary)


def test_round_trip_and_idempotent_add(tmp_path):
    store = Store(tmp_path / "p.duckdb")
    assert store.add([gen(0), gen(1)]) == 2
    # The same keys again (even with other text, as a redone stage would produce) add nothing.
    assert store.add([gen(0, text="changed"), gen(1), gen(2)]) == 1
    rows = store.generations("r", 1, "train")
    assert [r.sample_index for r in rows] == [0, 1, 2]
    assert rows[0].text == "answer 0" and rows[0].token_ids == [1, 2, 3]
    assert rows[0].logprobs == [-0.1, -0.2, -0.3] and rows[0].correct is True
    # A reopened file sees the same rows.
    assert len(Store(tmp_path / "p.duckdb").generations("r", 1, "train")) == 3
    with pytest.raises(TypeError, match="one storage/records.py type"):
        store.add([gen(3), Evaluation("r", 1, "heldout", "m", 1.0, None)])


def test_stage_ledger_and_parameterised_queries(tmp_path):
    store = Store(tmp_path / "p.duckdb")
    assert store.ledger_entry("r", 1, "judge") is None
    store.mark_stage_done("r", 1, "judge", 1.5, '{"auc": 0.5}')
    store.mark_stage_done("r", 1, "judge", 9.9, '{"auc": 0.9}')  # a second write changes nothing
    entry = store.ledger_entry("r", 1, "judge")
    assert isinstance(entry, LedgerEntry) and entry.summary_json == '{"auc": 0.5}' and entry.seconds == 1.5
    hostile = "x' OR '1'='1"
    assert store.query("SELECT * FROM stage_ledger WHERE run_id = ?", [hostile]) == []
    assert store.ledger(hostile) == []


def test_views_join_pairs_to_texts_and_summarise_iterations(tmp_path):
    store = Store(tmp_path / "p.duckdb")
    store.add([Prompt("r", "p0", "train", "jsonl", "1+1?", "2", "1+1?", "{}")])
    store.add([gen(0), gen(1)])
    store.add([Pair("r:1:p0", "r", 1, "p0", "r:1:train:p0:0", "r:1:train:p0:1", 4.0, 1.0, 3.0)])
    lineage = store.query("SELECT * FROM pair_lineage")
    assert lineage[0]["chosen"] == "answer 0" and lineage[0]["rejected"] == "answer 1"
    assert lineage[0]["chosen_correct"] is True and lineage[0]["question"] == "1+1?"
    assert store.pair_texts("r", 1)[0].chosen_text == "answer 0"
    store.add([Iteration("r", 0, "/seed", "s"), Iteration("r", 1, "/m1", "h1")])
    store.add([Evaluation("r", i, "heldout", "accuracy_greedy", acc, "h") for i, acc in ((0, 0.25), (1, 0.5))])
    store.add([Evaluation("r", 1, "train", "judge_auc", 0.75, "h")])
    store.add([TrainRun("r", 1, "dpo", "/seed", "/m1", "h1", 1, 1, 0.69, 2.0, 1.0, "{}")])
    store.mark_stage_done("r", 1, "train", 2.5, "{}")
    summary = store.iteration_summary("r")
    assert [(s.iteration, s.accuracy_greedy, s.pairs, s.judge_auc) for s in summary] == [
        (0, 0.25, None, None), (1, 0.5, 1, 0.75)]
    assert summary[1].train_loss == 0.69 and summary[1].t_train == 2.5 and summary[1].t_judge is None
