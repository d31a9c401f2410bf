"""Paired 95% intervals of accuracy differences: the arithmetic by hand, and the wiring from stored
greedy generations to evaluation rows, the summary view, `show`'s table and the report."""
import math
from types import SimpleNamespace

import pytest

from selfimprove.storage.db import Store
from selfimprove.storage.records import Evaluation, Generation, Iteration, Prompt, Run, now
from selfimprove.tasks import evaluate
from selfimprove.tasks.compare import greedy_difference, heldout_differences
from selfimprove.tasks.judge_probe import PROBE, probe_auc_interval
from selfimprove.tasks.stats import Z95, auc_interval, paired_difference


def test_interval_matches_hand_worked_case():
    # n = 50 items: 8 right for the new model only (n10), 2 right for the old only (n01), 20 right for
    # both, 20 wrong for both.
    #   d  = (n10 - n01) / n = (8 - 2) / 50 = 0.12
    #   se = sqrt(n10 + n01 - (n10 - n01)^2 / n) / n = sqrt(10 - 36/50) / 50 = sqrt(9.28) / 50 = 0.0609262
    #   95% CI = 0.12 -/+ 1.959964 * 0.0609262 = 0.12 -/+ 0.1194132 = [0.0005868, 0.2394132]
    old = {f"q{i}": i < 2 or 10 <= i < 30 for i in range(50)}  # items 0-1 (old only) and 10-29 (both)
    new = {f"q{i}": 2 <= i < 30 for i in range(50)}  # items 2-9 (new only) and 10-29 (both)
    d = paired_difference(old, new)
    assert (d.items, d.new_only, d.old_only) == (50, 8, 2)
    assert d.difference == pytest.approx(0.12)
    se = math.sqrt(10 - 36 / 50) / 50
    assert se == pytest.approx(0.0609262, abs=1e-7)
    assert (d.low, d.high) == (pytest.approx(0.12 - Z95 * se), pytest.approx(0.12 + Z95 * se))
    assert (d.low, d.high) == (pytest.approx(0.0005868, abs=1e-7), pytest.approx(0.2394132, abs=1e-7))
    assert d.significant and "above zero, n=50" in d.describe()
    # Swapping the models mirrors the interval.
    back = paired_difference(new, old)
    assert (back.difference, back.low, back.high) == pytest.approx((-0.12, -d.high, -d.low))
    assert "below zero" in back.describe()


def test_identical_models_differ_by_exactly_zero():
    answers = {f"q{i}": i % 3 == 0 for i in range(40)}
    d = paired_difference(answers, dict(answers))
    assert (d.difference, d.low, d.high, d.new_only, d.old_only) == (0.0, 0.0, 0.0, 0, 0)
    assert not d.significant and "within noise of zero" in d.describe()
    assert paired_difference({"a": True}, {"b": True}) is None  # no common item


def test_auc_interval_matches_hand_worked_case():
    # AUC A = 0.7 over 26 right and 74 wrong answers (Hanley & McNeil 1982):
    #   Q1 = A / (2 - A) = 0.538462, Q2 = 2 A^2 / (1 + A) = 0.576471
    #   se^2 = (0.21 + 25 (Q1 - 0.49) + 73 (Q2 - 0.49)) / (26 * 74) = 7.733891 / 1924 = 0.0040197
    #   95% CI = 0.7 -/+ 1.959964 * 0.063401 = [0.575736, 0.824264]
    low, high = auc_interval(0.7, 26, 74)
    assert (low, high) == (pytest.approx(0.575736, abs=2e-6), pytest.approx(0.824264, abs=2e-6))
    assert auc_interval(0.7, 104, 296)[1] - 0.7 < (high - 0.7) / 1.9  # 4x the answers: about half as wide
    assert auc_interval(1.0, 5, 5) == (1.0, 1.0) and auc_interval(0.99, 10, 10)[1] == 1.0  # kept inside [0, 1]


def test_probe_auc_interval_counts_the_runs_labelled_probe_answers(store):
    store.add([Prompt("r", f"p{i}", "probe", "t", f"{i} + 1?", str(i + 1), f"{i} + 1?", "{}") for i in range(103)])
    store.add([greedy(0, f"p{i}", i < 26 if i < 100 else None, PROBE) for i in range(103)])  # 3 unlabelled
    assert probe_auc_interval(store, "r", 0.7) == pytest.approx(auc_interval(0.7, 26, 74))
    assert probe_auc_interval(store, "r", None) == (None, None)


def greedy(iteration: int, prompt_id: str, correct: bool | None, purpose: str = "eval_greedy", index: int = 0):
    return Generation(f"r:{iteration}:{purpose}:{prompt_id}:{index}", "r", iteration, purpose, prompt_id, index,
                      "/m", "h", "vllm", 0.0, "text", [1, 2], None, "stop", 2, "1", correct)


@pytest.fixture
def store(tmp_path):
    """Held-out greedy answers of the seed and two iterations on 10 items; q9 has no reference."""
    store = Store(tmp_path / "p.duckdb")
    store.add([Run("r", "t", "self_rewarding", now(), "{}", "c", "seed")])
    store.add([Iteration("r", i, f"/m{i}", f"h{i}") for i in range(3)])
    right = {0: {0, 1, 2, 3}, 1: {0, 1, 2, 4, 5, 6}, 2: {1, 2, 4, 5, 6, 7, 8}}
    store.add([greedy(it, f"q{i}", None if i == 9 else i in right[it]) for it in range(3) for i in range(10)])
    # Not greedy held-out answers: sampled answers, another purpose; none may count.
    store.add([greedy(2, "q0", True, "eval_sample", 1), greedy(2, "q3", True, "train")])
    return store


def test_greedy_difference_pairs_items_and_skips_missing_references(store):
    d = greedy_difference(store, "r", (0, "eval_greedy"), (2, "eval_greedy"))
    # q9 (NULL both sides) is skipped: 9 items. New only: q4-q8 (5); old only: q0, q3 (2).
    assert (d.items, d.new_only, d.old_only) == (9, 5, 2)
    assert d.difference == pytest.approx(3 / 9)
    assert d.high - d.difference == pytest.approx(Z95 * math.sqrt(7 - 9 / 9) / 9)
    prev = greedy_difference(store, "r", (1, "eval_greedy"), (2, "eval_greedy"))
    assert (prev.items, prev.new_only, prev.old_only) == (9, 2, 1)  # q7, q8 vs q0
    assert greedy_difference(store, "r", (0, "bootstrap_eval_greedy"), (2, "eval_greedy")) is None
    assert store.greedy_correctness("r", 0, "eval_greedy")["q0"] is True
    assert "q9" not in store.greedy_correctness("r", 0, "eval_greedy")


def test_evaluate_stores_differences_and_show_reports_them(store, tmp_path, monkeypatch):
    assert heldout_differences(store, "r", 0) == {}  # the seed is compared with nothing
    # The answers are already stored; evaluation would only skip generating them again.
    monkeypatch.setattr(evaluate, "generate_samples", lambda *args: None)
    cfg = SimpleNamespace(seed=0, eval=SimpleNamespace(k=1, temperature=1.0, max_tokens=8))
    for it in range(3):
        result = evaluate.evaluate_model(store, cfg, "r", it, tmp_path)
    assert result.values["diff_vs_seed"] == pytest.approx(3 / 9)
    assert result.values["diff_vs_prev"] == pytest.approx(1 / 9)
    assert result.values["diff_vs_seed_low"] < result.values["diff_vs_seed"] < result.values["diff_vs_seed_high"]
    assert store.metric("r", 2, "heldout", "diff_vs_prev_high") == pytest.approx(result.values["diff_vs_prev_high"])

    # Other stages' metrics reach the view under their own names; absent ones are NULL.
    store.add([Evaluation("r", 2, "probe", "judge_auc", 0.8, "h"), Evaluation("r", 2, "pairs", "chosen_tokens", 9, "h"),
               Evaluation("r", 2, "heldout", "length_ratio_to_seed", 1.1, "h")])
    summary = store.iteration_summary("r")
    assert [s.diff_vs_seed is None for s in summary] == [True, False, False]
    assert summary[1].diff_vs_seed == summary[1].diff_vs_prev == pytest.approx(2 / 9)
    assert (summary[2].probe_auc, summary[2].chosen_tokens, summary[2].length_ratio) == (0.8, 9, 1.1)
    assert summary[2].rejected_answer_rate is None and summary[1].probe_auc is None

    from selfimprove.tasks.summary import iteration_table

    table = iteration_table(store, "r")
    header, *rows = table.splitlines()
    assert header.split()[:5] == ["iter", "acc", "vs_seed", "vs_prev", "maj@k"] and "probe_auc" in header
    d = greedy_difference(store, "r", (0, "eval_greedy"), (2, "eval_greedy"))
    assert f"{d.difference:+.3f} [{d.low:+.3f},{d.high:+.3f}]" in rows[2]
    assert rows[-1] == f"iteration 2 vs seed, held-out greedy accuracy (paired 95% CI): {d.describe()}"
    assert "within noise of zero, n=9" in rows[-1]


def test_report_draws_greedy_accuracy_with_intervals(store, tmp_path):
    from selfimprove.tasks.report import write_report

    store.add([Evaluation("r", it, "heldout", "accuracy_greedy", acc, "h")
               for it, acc in ((0, 0.4), (1, 0.6), (2, 0.7))])
    store.add([Evaluation("r", 2, "heldout", name, value, "h")
               for name, value in (("diff_vs_seed", 0.3), ("diff_vs_seed_low", -0.1), ("diff_vs_seed_high", 0.7))])
    files = write_report(store, "r", tmp_path / "report")
    png = (tmp_path / "report" / "accuracy_ci.png").read_bytes()
    assert tmp_path / "report" / "accuracy_ci.png" in files and png[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "report" / "summary.md").read_text()
    assert "vs_seed" in text and "+0.300 [-0.100,+0.700]" in text and "![accuracy_ci](accuracy_ci.png)" in text


def test_iteration_one_after_a_bootstrap_is_compared_with_the_bootstrapped_model(store):
    before = heldout_differences(store, "r", 1)
    assert before["diff_vs_prev"] == before["diff_vs_seed"]  # no bootstrap: it started from the seed
    # The bootstrapped model answered q0-q6 right: iteration 1 (q0-q2, q4-q6) lost q3 against it.
    store.add([greedy(0, f"q{i}", None if i == 9 else i < 7, "bootstrap_eval_greedy") for i in range(10)])
    after = heldout_differences(store, "r", 1)
    assert after["diff_vs_seed"] == before["diff_vs_seed"]
    assert after["diff_vs_prev"] == pytest.approx(-1 / 9)
    assert heldout_differences(store, "r", 2)["diff_vs_prev"] == pytest.approx(1 / 9)  # later: the previous iteration
