"""Answer extraction and checking: the verifiable side of every prompt that has an answer.

Extraction: the number after the last "Answer:" if there is one, else the last number in the
text. Checking: reasoning-gym's own `score_answer` for its tasks, numeric equality otherwise.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache

NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
_ANSWER_LINE = re.compile(r"answer\s*(?:is)?\s*[:=]?\s*\$?\s*(" + NUMBER + ")", re.IGNORECASE)
_NUMBER = re.compile(NUMBER)


def extract_answer(text: str | None) -> str | None:
    """The model's final answer as a normalised number string, or None when there is none.

    >>> extract_answer("3 + 4 = 7. Answer: 7")
    '7'
    >>> extract_answer("It is 1,200 apples")
    '1200'
    """
    if not text:
        return None
    marked = _ANSWER_LINE.findall(text)
    found = marked[-1] if marked else (_NUMBER.findall(text) or [None])[-1]
    return normalize_number(found) if found is not None else None


def normalize_number(raw: str) -> str | None:
    cleaned = raw.replace(",", "").strip().rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def numeric_match(predicted: str | None, reference: str | None) -> bool:
    if predicted is None or reference is None:
        return False
    ref = extract_answer(str(reference).split("####")[-1])  # GSM8K references end "#### 42"
    return ref is not None and predicted == ref


@lru_cache(maxsize=None)
def _rg_scorer(task: str):
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(task)


def is_correct(predicted: str | None, reference: str | None, source: str, metadata_json: str | None = None) -> bool | None:
    """True/False against the reference, None when the prompt has no reference answer."""
    if reference is None:
        return None
    if predicted is None:
        return False
    if source.startswith("reasoning_gym:"):
        metadata = json.loads(metadata_json or "{}")
        entry = {"question": metadata.get("question", ""), "answer": reference, "metadata": metadata}
        return _rg_scorer(source.split(":", 1)[1])(predicted, entry) >= 1.0
    return numeric_match(predicted, reference)
