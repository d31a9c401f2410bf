"""Self-Rewarding pair selection against hand-built candidate sets."""
from selfimprove.tasks.build import Ranked, select_pair


def c(gid, idx, score, text=None):
    return Ranked(gid, idx, text if text is not None else f"text {gid}", score)


def test_best_vs_worst():
    chosen, rejected = select_pair([c("a", 0, 2.0), c("b", 1, 4.5), c("c", 2, 1.0), c("d", 3, 3.0)], 0.5)
    assert (chosen.generation_id, rejected.generation_id) == ("b", "c")


def test_ties_on_best_and_worst_are_deterministic():
    cands = [c("a", 0, 4.0), c("b", 1, 4.0), c("c", 2, 1.0), c("d", 3, 1.0)]
    chosen, rejected = select_pair(cands, 0.0)
    assert (chosen.generation_id, rejected.generation_id) == ("a", "d")


def test_drop_reasons():
    assert select_pair([c("a", 0, 3.0), c("b", 1, 3.0)], 0.0) == "all_tied"
    assert select_pair([c("a", 0, 3.0), c("b", 1, 2.9)], 0.5) == "margin_below_min"
    assert select_pair([c("a", 0, 3.0), c("b", 1, None)], 0.0) == "fewer_than_two_scored"
    assert select_pair([], 0.0) == "fewer_than_two_scored"
    assert select_pair([c("a", 0, 5.0, "7"), c("b", 1, 1.0, " 7 ")], 0.0) == "identical_text"


def test_unscored_candidates_are_ignored_not_treated_as_zero():
    chosen, rejected = select_pair([c("a", 0, None), c("b", 1, 2.0), c("c", 2, 1.0)], 0.5)
    assert (chosen.generation_id, rejected.generation_id) == ("b", "c")


def test_margin_exactly_at_minimum_is_kept():
    result = select_pair([c("a", 0, 3.0), c("b", 1, 2.5)], 0.5)
    assert not isinstance(result, str)
