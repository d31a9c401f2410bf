"""B-STaR selection logic against hand-worked probe sets."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfimprove.tasks.bstar import (
    ProbeSample,
    balance_score,
    default_thresholds,
    exploration_exploitation,
    grid_search,
    select_samples,
)


def s(text, reward, correct):
    return ProbeSample(text, None, reward, correct)


# Threshold 0.5, n_star 2.
# Q1: unique selected = "x=4" (T), "x=5" (F), "x=4 alt" (T); " x=4 " is a duplicate of "x=4" and
#     "x=6" is below the threshold.  n=3, n'=2 -> min(2/2, 1) * 2/3 = 2/3
# Q2: selected "y" (T), "z" (None counts as not correct); "w" below.  n=2, n'=1 -> 1/2 * 1/2 = 1/4
# Q3: nothing at or above 0.5 -> 0
# balance = (2/3 + 1/4 + 0) / 3 = 11/36
Q1 = [s("x=4", 0.9, True), s(" x=4 ", 0.8, True), s("x=5", 0.7, False), s("x=4 alt", 0.6, True),
      s("x=6", 0.2, False)]
Q2 = [s("y", 0.9, True), s("z", 0.55, None), s("w", 0.1, True)]
Q3 = [s("q", 0.3, True)]


def test_balance_score_hand_worked():
    assert balance_score([Q1, Q2, Q3], 0.5, n_star=2) == pytest.approx(11 / 36)


def test_balance_counts_duplicates_once():
    # Counting " x=4 " separately would give n=4, n'=3 -> min(3/2, 1) * 3/4 = 0.75.
    assert balance_score([Q1], 0.5, n_star=2) == pytest.approx(2 / 3)
    # Exploration factor with the default n_star=8: 2/8 * 2/3.
    assert balance_score([Q1], 0.5) == pytest.approx(1 / 6)


def test_threshold_is_inclusive():
    # At 0.6 "x=4 alt" (reward exactly 0.6) stays in: same set as at 0.5.
    assert balance_score([Q1], 0.6, n_star=2) == pytest.approx(2 / 3)
    # At 0.65 it drops: n=2, n'=1 -> 1/2 * 1/2.
    assert balance_score([Q1], 0.65, n_star=2) == pytest.approx(1 / 4)


def test_nothing_selected_contributes_zero():
    assert balance_score([Q3], 0.5) == 0.0
    assert balance_score([Q1], 2.0) == 0.0
    assert balance_score([], 0.5) == 0.0
    assert balance_score([[]], 0.5) == 0.0
    # An empty query still counts in the mean: 2/3 over two queries.
    assert balance_score([Q1, []], 0.5, n_star=2) == pytest.approx(1 / 3)


def test_balance_rejects_bad_n_star():
    with pytest.raises(ValueError):
        balance_score([Q1], 0.5, n_star=0)


def test_select_samples_dedups_by_stripped_text_after_filtering():
    q = [s("a", 0.1, True), s(" a", 0.9, True), s("a ", 0.8, True), s("b", 0.6, False), s("c", 0.4, True)]
    # "a" at index 0 is below the threshold, so the first selected copy (index 1) is kept.
    assert select_samples([q, Q1, Q3], 0.5) == [[1, 3], [0, 2, 3], []]
    assert select_samples([], 0.5) == []


def test_exploration_exploitation_hand_case():
    q1 = [s("a", 0.9, True), s("a", 0.8, True), s("b", 0.7, False), s("c", 0.2, True)]
    q2 = [s("d", 0.9, False), s("e", 0.1, False)]
    q3 = [s("f", 0.95, None), s("g", 0.3, None)]
    m = exploration_exploitation([q1, q2, q3], 0.5)
    assert m["pass_at_k"] == pytest.approx(1 / 3)  # only q1 has a correct sample
    assert m["distinct_correct_per_query"] == pytest.approx(2 / 3)  # {"a", "c"} in q1
    # Labelled and >= 0.5: a, a, b, d -> 2 correct of 4 (f is unlabelled and skipped).
    assert m["reward_precision"] == pytest.approx(0.5)
    # Correct: a, a, c -> 2 of 3 at or above 0.5.
    assert m["reward_recall"] == pytest.approx(2 / 3)
    # Every sample >= 0.5, duplicates and unlabelled included: 3 + 1 + 1.
    assert m["selected_per_query"] == pytest.approx(5 / 3)


def test_exploration_exploitation_undefined_ratios_are_none():
    m = exploration_exploitation([[s("a", 0.1, True)], [s("b", 0.9, None)]], 0.5)
    assert m["reward_precision"] is None  # only "b" selected, and it is unlabelled
    assert m["reward_recall"] == 0.0
    assert exploration_exploitation([[s("a", 0.9, False)]], 0.5)["reward_recall"] is None
    empty = exploration_exploitation([], 0.5)
    assert empty == {"pass_at_k": 0.0, "distinct_correct_per_query": 0.0, "reward_precision": None,
                     "reward_recall": None, "selected_per_query": 0.0}


def test_grid_table_values_and_order():
    probes = {1.0: [Q1, Q2, Q3], 0.5: [Q1]}
    best, table = grid_search(probes, [0.65, 0.5], n_star=2)
    assert [(r["temperature"], r["threshold"]) for r in table] == [(0.5, 0.5), (0.5, 0.65), (1.0, 0.5), (1.0, 0.65)]
    # (1.0, 0.65): Q1 gives 1/4 (as above); Q2 keeps only "y" -> min(1/2, 1) * 1/1 = 1/2; Q3 gives 0.
    # -> (1/4 + 1/2 + 0) / 3 = 1/4.
    assert [r["balance"] for r in table] == pytest.approx([2 / 3, 1 / 4, 11 / 36, 1 / 4])
    assert table[0]["selected_per_query"] == pytest.approx(4.0)  # Q1: 4 samples >= 0.5
    assert table[0]["precision"] == pytest.approx(3 / 4)
    assert best == (0.5, 0.5)


def test_grid_tie_prefers_lower_temperature():
    probes = {1.2: [Q1], 0.8: [Q1], 1.0: [Q1]}
    best, _ = grid_search(probes, [0.5], n_star=2)
    assert best == (0.8, 0.5)


def test_grid_tie_prefers_higher_threshold():
    # 0.3, 0.5 and 0.6 select the same samples of Q1, so all three tie at 2/3.
    best, table = grid_search({0.7: [Q1]}, [0.3, 0.6, 0.5], n_star=2)
    assert [r["balance"] for r in table] == pytest.approx([2 / 3] * 3)
    assert best == (0.7, 0.6)


def test_grid_higher_balance_beats_tie_breaks():
    weak = [[s("a", 0.9, False), s("b", 0.9, True)]]  # 1/2 * 1/2 = 1/4
    strong = [[s("a", 0.9, True), s("b", 0.9, True)]]  # 1 * 1 = 1
    best, _ = grid_search({0.2: weak, 1.5: strong}, [0.5], n_star=2)
    assert best == (1.5, 0.5)


def test_grid_tie_survives_float_noise():
    # Same multiset of per-query scores summed in a different order: the float means can differ in
    # the last bit (here 1.1 comes out 1 ulp higher), which must not override the lower temperature.
    a = [[s("a", 1.0, True)], [s("a", 1.0, True), s("b", 1.0, False), s("c", 1.0, False)],
         [s("a", 1.0, True), s("b", 1.0, False), s("c", 1.0, False), s("d", 1.0, False),
          s("e", 1.0, False), s("f", 1.0, False), s("g", 1.0, False)]]
    best, _ = grid_search({0.9: a, 1.1: list(reversed(a))}, [0.5], n_star=1)
    assert best == (0.9, 0.5)


def test_grid_needs_a_grid():
    with pytest.raises(ValueError):
        grid_search({}, [0.5])
    with pytest.raises(ValueError):
        grid_search({1.0: [Q1]}, [])


def test_default_thresholds():
    assert default_thresholds([0, 1, 1, 0]) == [0.5]
    assert default_thresholds([1.0, 1.0]) == [0.5]
    assert default_thresholds([]) == []
    # Levels 0, .25, .5, .75, 1 over 9 sorted rewards -> indices 0, 2, 4, 6, 8.
    assert default_thresholds([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.4, 0.6, 0.8]) == [0.1, 0.3, 0.5, 0.7, 0.9]
    # Discrete judge scores: sorted [3, 3, 3, 3, 4, 5], levels pick indices 0, 1, 2, 3, 5 -> the
    # repeated 3s collapse, and 4 sits between two levels so it is not a candidate.
    assert default_thresholds([3.0, 3.0, 3.0, 4.0, 3.0, 5.0]) == [3.0, 5.0]
    assert default_thresholds([0.2, 0.8, 0.5], count=1) == [0.5]
    with pytest.raises(ValueError):
        default_thresholds([0.2], count=0)


samples = st.builds(ProbeSample, st.sampled_from(["a", " a", "b", "c ", "d"]), st.none(),
                    st.floats(-5, 5, allow_nan=False), st.sampled_from([True, False, None]))


@given(st.lists(st.lists(samples, max_size=12), max_size=6), st.floats(-6, 6, allow_nan=False),
       st.integers(1, 10))
@settings(max_examples=300)
def test_balance_score_in_unit_interval(queries, threshold, n_star):
    assert 0.0 <= balance_score(queries, threshold, n_star) <= 1.0


def test_dpo_pair_never_pairs_a_kept_sample_with_its_own_duplicate():
    """Defect: a duplicate of the kept sample (left out of the selection only for being a
    duplicate) was taken as "below the threshold" and paired with itself."""
    from selfimprove.methods.bstar import dpo_pair

    s = lambda text, reward: ProbeSample(text, None, reward, None)  # noqa: E731
    query = [s("7", 1.0), s("7 ", 0.6)]  # both above the threshold, same text
    keep = select_samples([query], 0.5)[0]
    assert keep == [0]
    assert dpo_pair(query, keep, 0.5) == "nothing_below_threshold"
    # A genuinely lower, different answer is the rejected side; an unscored one never is.
    query = [s("7", 1.0), s("7", 0.6), s("8", 0.2), s("9", float("-inf"))]
    assert dpo_pair(query, select_samples([query], 0.5)[0], 0.5) == (0, 2)
    assert dpo_pair(query, [], 0.5) == "nothing_selected"
