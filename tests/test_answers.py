"""Answer grading for every kind of reference: numbers, words, lists, expressions; and refusing what cannot be scored.

Real reasoning-gym scorers on small generated entries (no models); a fake scorer only where the test is
about the refusal logic itself.
"""
import json

import pytest
import reasoning_gym
from hypothesis import given, settings
from hypothesis import strategies as st

from selfimprove.tasks import answers
from selfimprove.tasks.answers import UnscorableTaskError, answer_kind, check_scorable, grade


def _records(task: str, size: int = 3, seed: int = 1, **task_args) -> list[dict]:
    """Prompt records shaped as tasks/data.py builds them (metadata_json holds the question too)."""
    out = []
    for entry in reasoning_gym.create_dataset(task, size=size, seed=seed, **task_args):
        out.append({"source": f"reasoning_gym:{task}", "question": entry["question"], "answer": str(entry["answer"]),
                    "metadata_json": json.dumps({**entry["metadata"], "question": entry["question"]}, default=str)})
    return out


def _grade(text, record):
    return grade(text, record["answer"], record["source"], record["metadata_json"])


# --- word answers: the defect (a word task was always wrong) -------------------------------------------------------

def test_word_task_right_word_is_correct_and_other_word_is_wrong():
    record = _records("spell_backward")[0]  # "Spell this word backward ...: ammonia" -> "ainomma"
    word = record["answer"]
    assert word.isalpha()
    assert _grade(f"Reversing the letters gives it.\nAnswer: {word}", record) == (word, True)
    assert _grade(f"Answer: {word}.", record) == (word, True)  # sentence-final period is punctuation
    assert _grade(f"**Answer:** {word}", record) == (word, True)
    assert _grade(f"The answer is $\\boxed{{{word}}}$", record) == (word, True)
    assert _grade(word, record) == (word, True)  # no marker: the last non-empty line
    assert _grade("Answer: banana", record) == ("banana", False)
    assert _grade(f"Answer: {word[::-1]}", record)[1] is False  # the word forwards is not the answer


def test_word_list_task_uses_its_own_scorer():
    record = _records("word_sorting")[0]
    assert _grade(f"Sorted.\nAnswer: {record['answer']}", record) == (record["answer"], True)
    shuffled = ", ".join(reversed(record["answer"].split(", ")))
    assert _grade(f"Answer: {shuffled}", record) == (shuffled, False)


def test_expression_task_accepts_an_equivalent_expression():
    record = _records("polynomial_multiplication")[0]
    reference = record["answer"]  # e.g. "-896*x**5 + 2240*x**4 + 3584*x**3"
    reordered = " + ".join(reversed(reference.replace(" - ", " + -").split(" + ")))
    assert _grade(f"Answer: {reference}", record) == (reference, True)
    assert _grade(f"Answer: {reordered}", record)[1] is True  # sympy decides equivalence, not string equality
    assert _grade("Answer: x**2 + 1", record)[1] is False


def test_number_list_task():
    record = _records("number_sorting")[0]
    assert _grade(f"Answer: {record['answer']}", record)[1] is True
    assert _grade("Answer: ['1', '2']", record)[1] is False


# --- numbers keep working -------------------------------------------------------------------------------------------

def test_basic_arithmetic_with_marker_and_bare_number():
    meta = json.dumps({"question": "Calculate 3 + 4."})
    source = "reasoning_gym:basic_arithmetic"
    assert grade("3 + 4 = 7\nAnswer: 7", "7", source, meta) == ("7", True)
    assert grade("7", "7", source, meta) == ("7", True)
    assert grade("3 + 4 = 7", "7", source, meta) == ("7", True)  # no marker: the last number
    assert grade("Answer: 7.0", "7", source, meta) == ("7", True)  # normalised before the exact-match scorer
    assert grade("Answer: **7**.", "7", source, meta) == ("7", True)
    assert grade("Answer: 8", "7", source, meta) == ("8", False)
    assert grade("Answer: 1,200", "1200", source, meta) == ("1200", True)
    assert grade("Answer: -4", "-4", source, meta) == ("-4", True)


def test_gsm8k_style_reference():
    reference = "She makes 9 * 2 = $18.\nShe sells 42 in all.\n#### 42"
    assert answer_kind(reference) == "number"
    assert grade("So in total 42 eggs.", reference, "gsm8k", None) == ("42", True)
    assert grade("Answer: $42.00", reference, "gsm8k", None) == ("42", True)
    assert grade("Answer: 41", reference, "gsm8k", None) == ("41", False)


def test_non_reasoning_gym_text_reference_is_normalised_exact_match():
    assert grade("Answer: new  York", "New York", "jsonl", None) == ("new  York", True)
    assert grade("Answer: Boston", "New York", "jsonl", None) == ("Boston", False)


def test_empty_reference_needs_an_empty_answer():
    # reasoning-gym's "ab" task: a program can rewrite to nothing, and its reference is then "".
    assert grade("The tokens all cancel.\nAnswer:", "", "reasoning_gym:ab", "{}") == ("", True)
    assert grade("Answer: #A B#", "", "reasoning_gym:ab", "{}") == ("#A B#", False)


def test_missing_reference_and_missing_answer():
    assert grade("Answer: 7", None, "jsonl", None) == ("7", None)
    assert grade(None, "7", "jsonl", None) == (None, False)
    assert grade("", "talps", "reasoning_gym:spell_backward", "{}") == (None, False)
    assert grade("Answer:", "talps", "reasoning_gym:spell_backward", "{}") == (None, False)


@pytest.mark.parametrize("reference, kind", [
    ("42", "number"), ("-4", "number"), ("1,200", "number"), ("2.50", "number"), ("#### 18", "number"),
    ("talps", "text"), ("1, 2, 3", "text"), ("3/4", "text"), ("x**2 + 1", "text"), ("", "text"), (None, None),
])
def test_answer_kind(reference, kind):
    assert answer_kind(reference) == kind


def test_scorer_that_raises_grades_wrong_not_crash(monkeypatch):
    def boom(answer, entry):
        raise RuntimeError("scorer bug")

    monkeypatch.setattr(answers, "_rg_scorer", lambda task: boom)
    assert grade("Answer: 7", "7", "reasoning_gym:basic_arithmetic", "{}") == ("7", False)


@given(st.text(), st.sampled_from(["7", "talps", "x**2 + 1", "a\nb", "", "#### 1,200"]))
@settings(max_examples=300, deadline=None)
def test_grade_never_crashes_on_garbage(text, reference):
    answer, correct = grade(text, reference, "jsonl", None)
    assert correct in (True, False) and (answer is not None or correct is False)


# --- refusing what the project cannot score -------------------------------------------------------------------------

@pytest.mark.parametrize("task, args", [
    ("basic_arithmetic", {}), ("spell_backward", {}), ("word_sorting", {}), ("polynomial_multiplication", {}),
    ("number_sorting", {}), ("letter_jumble", {}), ("sentence_reordering", {}), ("ab", {}), ("rotate_matrix", {}),
])
def test_check_scorable_accepts_tasks_it_can_score(task, args):
    check_scorable(f"reasoning_gym:{task}", _records(task, size=10, **args))


def test_check_scorable_refuses_a_task_whose_gold_answer_does_not_score(monkeypatch):
    records = _records("spell_backward")
    monkeypatch.setattr(answers, "_rg_scorer", lambda task: (lambda answer, entry: 0.0))
    with pytest.raises(UnscorableTaskError) as err:
        check_scorable("reasoning_gym:spell_backward", records)
    message = str(err.value)
    assert "spell_backward" in message and "cannot score" in message
    assert records[0]["answer"] in message and "0.0" in message
    assert records[0]["question"][:30] in message


def test_check_scorable_refuses_when_the_scorer_raises(monkeypatch):
    def boom(answer, entry):
        raise KeyError("sorted_words")

    monkeypatch.setattr(answers, "_rg_scorer", lambda task: boom)
    with pytest.raises(UnscorableTaskError, match="KeyError"):
        check_scorable("reasoning_gym:spell_backward", _records("spell_backward"))


def test_check_scorable_refuses_a_task_without_a_scorer():
    records = [{"answer": "x", "metadata_json": "{}", "question": "q"}]
    with pytest.raises(UnscorableTaskError, match="no_such_task"):
        check_scorable("reasoning_gym:no_such_task", records)


def test_check_scorable_refuses_a_reference_that_cannot_round_trip():
    # A worked solution in the answer field: "Answer: The answer is Paris" reads back as "Paris", which never
    # equals the whole reference, so every response would be graded wrong.
    with pytest.raises(UnscorableTaskError, match="data.source 'jsonl'.*The answer is Paris.*capital of France"):
        check_scorable("jsonl", [{"answer": "The answer is Paris", "metadata_json": "{}",
                                  "question": "What is the capital of France?"}])
    check_scorable("jsonl", [{"answer": "Paris", "metadata_json": "{}"}, {"answer": None, "metadata_json": "{}"}])
    check_scorable("gsm8k", [{"answer": "9 * 2 = 18\n#### 18", "metadata_json": "{}"}])


def test_a_run_refuses_an_unscorable_task_before_writing_prompts(tmp_path, tiny_model_dir, monkeypatch):
    """Preparing a run on a task whose own reference answers do not score raises, naming the task."""
    import selfimprove.tasks.answers as answers
    from selfimprove.config import config_from_dict
    from selfimprove.tasks import prepare
    from selfimprove.tasks.common import store_for
    from tests.conftest import tiny_config_tree

    monkeypatch.setattr(answers, "_rg_scorer", lambda task: (lambda answer, entry: 0.0))
    cfg = config_from_dict(tiny_config_tree(tmp_path / "data", tiny_model_dir))
    with pytest.raises(answers.UnscorableTaskError, match="basic_arithmetic"):
        prepare.prepare_run(store_for(cfg), cfg, "r")
    assert store_for(cfg).prompts("r", "train") == []  # nothing was written for a task that cannot be scored
