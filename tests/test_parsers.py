"""Answer extraction, judge-score parsing and the small statistics, against hand-worked cases."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from selfimprove.storage.records import Generation
from selfimprove.tasks.answers import grade
from selfimprove.tasks.evaluate import heldout_metrics, majority_answer
from selfimprove.tasks.judge import auc
from selfimprove.tasks.judge_prompt import expected_score, judge_prompt, parse_final_score


@pytest.mark.parametrize("text, expected", [
    ("Answer: 42", "42"),
    ("3 + 4 = 7\nAnswer: 7", "7"),
    ("The answer is -12.", "-12"),
    ("first 3 then 5", "5"),
    ("It costs 1,250 dollars", "1250"),
    ("Answer: 2.50", "2.5"),
    ("no digits here", None),
    ("", None),
    (None, None),
    ("Answer: 8 ... wait, Answer: 9", "9"),
])
def test_grade_extracts_the_numeric_answer(text, expected):
    assert grade(text, "0", "jsonl")[0] == expected  # a numeric reference: the answer is a number


@given(st.text())
@settings(max_examples=300)
def test_grade_never_crashes_extracting_from_garbage(text):
    result = grade(text, "0", "jsonl")[0]
    assert result is None or float(result) == float(result)


def test_grade_reads_the_gsm8k_reference_number():
    assert grade("18", "She makes 9 * 2 = $18.\n#### 18", "gsm8k")[1]
    assert not grade("17", "#### 18", "gsm8k")[1]
    assert not grade(None, "18", "gsm8k")[1]


def test_grade_uses_the_reasoning_gym_scorer():
    assert grade("Answer: 7", "7", "reasoning_gym:basic_arithmetic", "{}")[1] is True
    assert grade("Answer: 8", "7", "reasoning_gym:basic_arithmetic", "{}")[1] is False
    assert grade(None, "7", "jsonl")[1] is False
    assert grade("Answer: 7", None, "jsonl")[1] is None


@pytest.mark.parametrize("judge_text, expected", [
    ("The response is relevant and correct.\nScore: 4", 4.0),
    ("Good.\n\nScore: 5/5\n", 5.0),
    ("**Score:** 3", 3.0),
    ("score = 2 points", 2.0),
    ("Score: 0", 0.0),
    # A score quoted from the judged response is not the judge's own final line.
    ("The response ends with 'Score: 5' which is not how to answer.\nIt is wrong.", None),
    ("Score: 5\nBut actually the response is poor.", None),
    ("Score: 7", None),  # outside 0..5
    ("Score: 6", None),
    ("Score: -1", None),  # the minus sign is part of the number, not punctuation to skip
    ("**Score:** -1", None),
    ("Score: -0", None),
    ("Score: 4", 4.0),
    ("**Score:** 4/5", 4.0),
    ("Score: 4.5", 4.5),
    ("Score: \u22121", None),  # a Unicode minus too
    ("Score: 3 out of 5.", 3.0),
    ("Score: four", None),
    ("", None),
    (None, None),
])
def test_parse_final_score(judge_text, expected):
    assert parse_final_score(judge_text) == expected


@given(st.text())
@settings(max_examples=300)
def test_parse_final_score_on_garbage_is_none_or_in_range(text):
    score = parse_final_score(text)
    assert score is None or 0.0 <= score <= 5.0


def test_judge_prompt_embeds_question_and_response_verbatim():
    prompt = judge_prompt("What is {x}?", "It is {question}")
    assert "What is {x}?" in prompt and "It is {question}" in prompt
    assert prompt.rstrip().endswith('where N is a whole number from 0 to 5.')


def test_expected_score_hand_computed():
    # P(2)=0.2, P(4)=0.6 (split over two spellings), P(5)=0.2 -> E = 0.4 + 2.4 + 1.0 = 3.8
    probs = torch.tensor([0.2, 0.3, 0.3, 0.2, 0.0])
    digits = {0: [], 1: [], 2: [0], 3: [], 4: [1, 2], 5: [3]}
    score, mass = expected_score(torch.log(probs), digits)
    assert math.isclose(score, 3.8, rel_tol=1e-6) and math.isclose(mass, 1.0, rel_tol=1e-6)
    # Renormalised when only half the mass is on digits.
    half = {0: [0], 1: [], 2: [], 3: [], 4: [1], 5: []}
    score, mass = expected_score(torch.log(torch.tensor([0.25, 0.25, 0.5])), half)
    assert math.isclose(score, 2.0, rel_tol=1e-6) and math.isclose(mass, 0.5, rel_tol=1e-6)


def test_auc_hand_computed():
    # pos {3, 1}, neg {2, 1}: pairs (3>2)=1, (3>1)=1, (1<2)=0, (1=1)=0.5 -> 2.5 / 4
    assert auc([(3, True), (1, True), (2, False), (1, False)]) == 0.625
    assert auc([(1, True)]) is None


def _gen(prompt_id: str, answer: str | None, correct: bool | None, num_tokens: int = 0) -> Generation:
    return Generation(generation_id=f"{prompt_id}-{answer}", run_id="r", iteration=0, purpose="eval_sample",
                      prompt_id=prompt_id, sample_index=0, model_path="m", model_hash=None, engine="hf",
                      temperature=1.0, text="", token_ids=[], logprobs=None, finish_reason="stop",
                      num_tokens=num_tokens, extracted_answer=answer, correct=correct)


def test_majority_vote_and_heldout_metrics():
    assert majority_answer([None, None]) is None
    assert majority_answer(["2", "3", "3"]) == "3"
    greedy = [_gen("a", "1", True, 4), _gen("b", None, False, 8)]
    sampled = [_gen("a", "1", True), _gen("a", "2", False), _gen("a", "2", False),
               _gen("b", "5", True), _gen("b", "6", False)]
    m = heldout_metrics(greedy, sampled)
    assert m["accuracy_greedy"] == 0.5 and m["mean_response_tokens"] == 6.0 and m["no_answer_rate"] == 0.5
    # a: majority "2" is wrong; b: tie 5/6 -> first seen "5", right. pass@k: both have a right sample.
    assert m["maj_at_k"] == 0.5 and m["pass_at_k"] == 1.0
