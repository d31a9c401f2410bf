"""Answer extraction and grading: the verifiable side of every prompt that has a reference answer.

Extraction: the text after the last "Answer:" (or "answer is") to the end of that line, without the
wrappers models put around it (**x**, $x$, \\boxed{x}, `x`, a sentence-final period). Without a
marker: the last number in the text when the reference is a number, else the last non-empty line.
A multi-line reference (a grid, a board) takes everything after the marker instead of one line.

Grading: reasoning-gym's own `score_answer` for its tasks (score >= 1.0 is correct), so a word,
list or expression answer is judged the way the task defines; numeric equality for numeric
references from other sources, else case-insensitive, whitespace-normalised exact match. MATH-500
(source "math500") has its own: the last \\boxed{} and a LaTeX equivalence check (tasks/math_answers.py).

`check_scorable` refuses up front a task whose own reference answers do not grade as correct when
written as a model would write them: such a task would silently score every response wrong.
"""
from __future__ import annotations

import json
import re
from functools import cache
from typing import Literal

from selfimprove.tasks import math_answers

AnswerKind = Literal["number", "text"]

# A number as models and references write it: optional minus, digits with optional thousands commas, optional decimals.
NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_NUMBER = re.compile(NUMBER)
_WHOLE_NUMBER = re.compile(r"\s*\$?\s*(" + NUMBER + r")\s*\.?\s*")
# "Answer:", "**Answer**:", "Final answer =", "the answer is", "The answer is: ..."
_MARKER = re.compile(r"\banswer\b(?:[\s*_]+is\b)?[\s*_]*[:=]|\banswer[\s*_]+is\b", re.IGNORECASE)
_LATEX_WRAPPER = re.compile(r"\\(?:boxed|fbox|text|textbf|mathrm|mathbf)\s*\{(.*)\}", re.DOTALL)
_BOXED_INSIDE = re.compile(r"\\boxed\s*\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_PAIRS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("`", "`"))
_QUOTES = (('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019"))
_SCAN = 20  # check_scorable looks at this many records


class UnscorableTaskError(ValueError):
    """The project cannot grade this task's answers: every response would silently count as wrong."""


def normalize_number(raw: str) -> str | None:
    """A canonical spelling of a number ("1,200" -> "1200", "7.0" -> "7", "2.50" -> "2.5"), None when not a number.

    >>> normalize_number("1,200"), normalize_number("-7.0"), normalize_number("$2.50."), normalize_number("x")
    ('1200', '-7', '2.5', None)
    """
    match = _WHOLE_NUMBER.fullmatch(raw.replace("\u2212", "-"))
    if not match:
        return None
    number = match.group(1).replace(",", "")
    sign = "-" if number.startswith("-") else ""
    whole, _, frac = number.lstrip("-").partition(".")
    whole, frac = whole.lstrip("0") or "0", frac.rstrip("0")
    text = f"{whole}.{frac}" if frac else whole
    return text if text == "0" else sign + text


def answer_kind(reference: str | None) -> AnswerKind | None:
    """"number" when the reference is a number (a GSM8K reference counts by its final "#### 42"), else "text".

    >>> answer_kind("#### 1,200"), answer_kind("ainomma"), answer_kind(None)
    ('number', 'text', None)
    """
    if reference is None:
        return None
    return "number" if _reference_number(reference) is not None else "text"


def _reference_number(reference: str) -> str | None:
    return normalize_number(str(reference).split("####")[-1])


def grade(text: str | None, reference: str | None, source: str,
          metadata_json: str | None = None) -> tuple[str | None, bool | None]:
    """(the extracted answer, whether it is correct) for one response.

    correct is None when there is no reference, False when no answer could be extracted. For
    "reasoning_gym:<task>" sources the task's own scorer decides; a scorer that raises on a
    response grades it wrong rather than stopping the stage.

    >>> grade("Reversed: Answer: **talps**.", "talps", "jsonl")
    ('talps', True)
    >>> grade("so 3 + 4 = 7", "She has 7.\\n#### 7", "gsm8k")
    ('7', True)
    >>> grade(r"so $\\boxed{\\dfrac12}$", r"\\frac{1}{2}", "math500")
    ('\\\\frac{1}{2}', True)
    """
    if source == math_answers.SOURCE:  # LaTeX answers: the last \\boxed{}, an equivalence check (math_answers.py)
        return math_answers.grade(text, reference)
    answer = _extract(text, reference)
    if reference is None:
        return answer, None
    if answer is None:
        return None, False
    try:
        return answer, _score(answer, text or "", reference, source, metadata_json) >= 1.0
    except Exception:  # noqa: BLE001 - a scorer's bug on odd model output is a wrong answer, not a crash
        return answer, False


def check_scorable(source: str, records: list[dict]) -> None:
    """Raise UnscorableTaskError when the project cannot grade this source's answers.

    Each of the first records' own reference answer, written as a model would ("Answer: <reference>"),
    goes through the same extraction and scoring as a response and must grade correct. Records
    without a reference are skipped (nothing will be graded for them).
    """
    task = source.split(":", 1)[1] if source.startswith("reasoning_gym:") else None
    name = f"data.task {task!r}" if task is not None else f"data.source {source!r}"
    if task is not None:
        try:
            scorer = _rg_scorer(task)
        except Exception as exc:  # noqa: BLE001 - reasoning-gym raises ValueError/KeyError/... for unknown names
            raise UnscorableTaskError(f"{name}: the project cannot score this task: reasoning_gym has no "
                                      f"score_answer for it ({type(exc).__name__}: {exc})") from exc
        if not callable(scorer):
            raise UnscorableTaskError(f"{name}: the project cannot score this task: reasoning_gym's "
                                      f"get_score_answer_fn returned {scorer!r}")
    if source == math_answers.SOURCE:
        _check_math(name, records)
        return
    how = "reasoning_gym's score_answer" if task is not None else "the project's exact/numeric match"
    for record in [r for r in records if r.get("answer") is not None][:_SCAN]:
        reference = str(record["answer"])
        gold = reference.split("####")[-1].strip() if task is None else reference
        written = f"Answer: {gold}"
        item = _item(record)
        answer = _extract(written, reference)
        if answer is None:
            raise UnscorableTaskError(f"{name}: the project cannot score this task: no answer can be read back from "
                                      f"its own reference answer {reference!r} formatted as {written!r} ({item})")
        try:
            score = _score(answer, written, reference, source, record.get("metadata_json"))
        except Exception as exc:  # noqa: BLE001 - any failure of the task's own scorer on its gold answer
            raise UnscorableTaskError(f"{name}: the project cannot score this task: its own reference answer "
                                      f"{reference!r} formatted as {written!r} makes {how} raise "
                                      f"{type(exc).__name__}: {exc} ({item})") from exc
        if not score >= 1.0:
            raise UnscorableTaskError(f"{name}: the project cannot score this task: its own reference answer "
                                      f"{reference!r} formatted as {written!r} scores {score} with {how} "
                                      f"(read back as {answer!r}; {item})")


# --- internals ------------------------------------------------------------------------------------------------------

def _check_math(name: str, records: list[dict]) -> None:
    """MATH answers round-trip as a model is asked to write them (in \\boxed{}); the run says which checker grades."""
    math_answers.warn_if_undercounting()
    for record in [r for r in records if r.get("answer") is not None][:_SCAN]:
        written = f"The final answer is $\\boxed{{{record['answer']}}}$."
        answer, correct = math_answers.grade(written, str(record["answer"]))
        if not correct:
            raise UnscorableTaskError(f"{name}: the project cannot score this task: its own reference answer "
                                      f"{record['answer']!r} written as {written!r} grades wrong with "
                                      f"{math_answers.checker()} (read back as {answer!r}; {_item(record)})")


def _item(record: dict) -> str:
    question = record.get("question")
    if question is None:
        try:
            question = json.loads(record.get("metadata_json") or "{}").get("question")
        except (ValueError, AttributeError):
            question = None
    if question is None:
        return f"item {record.get('prompt_id', '?')}"
    question = " ".join(str(question).split())
    return f"item {question[:120] + '...' if len(question) > 120 else question!r}"


@cache
def _rg_scorer(task: str):
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(task)


def _rg_entry(reference: str, metadata_json: str | None) -> dict:
    metadata = json.loads(metadata_json or "{}")
    return {"question": metadata.get("question", ""), "answer": reference, "metadata": metadata}


def _score(answer: str, text: str, reference: str, source: str, metadata_json: str | None) -> float:
    """The score of an extracted answer; raises what the task's scorer raises."""
    numeric_ref = _reference_number(reference)
    if source.startswith("reasoning_gym:"):
        scorer = _rg_scorer(source.split(":", 1)[1])
        entry = _rg_entry(reference, metadata_json)
        candidates = [answer]
        if numeric_ref is not None:
            # The normalised number first ("7.0" -> "7" for an exact-match scorer), then the number as the
            # response spelled it, for a task whose references keep a spelling such as "3.50".
            written = _marked_text(text, reference)
            if written is not None and written != answer:
                candidates.append(written)
        return max(float(scorer(candidate, entry)) for candidate in candidates)
    if numeric_ref is not None:
        return 1.0 if answer == numeric_ref else 0.0
    return 1.0 if _fold(answer) == _fold(reference) else 0.0


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _extract(text: str | None, reference: str | None) -> str | None:
    """The answer in a response, shaped by the reference's kind (None reference: read as text)."""
    if not text:
        return None
    numeric = reference is not None and _reference_number(reference) is not None
    marked = _marked_text(text, reference)
    if numeric:
        if marked is None:
            found = _NUMBER.findall(text.replace("\u2212", "-"))
            return normalize_number(found[-1]) if found else None
        return _number_in(marked)
    if marked is not None:
        # An empty answer is only an answer where the reference is empty (reasoning-gym's "ab" has some).
        return marked if marked or (reference is not None and not str(reference).strip()) else None
    lines = [line for line in text.splitlines() if line.strip()]
    return (_clean(lines[-1], reference) or None) if lines else None


def _marked_text(text: str | None, reference: str | None) -> str | None:
    """The cleaned text after the last answer marker; None when there is no marker, "" when nothing follows it."""
    if not text:
        return None
    markers = list(_MARKER.finditer(text))
    if not markers:
        return None
    rest = text[markers[-1].end():]
    if reference is not None and "\n" in str(reference).strip():
        body = rest.strip()  # a multi-line answer: everything after the marker
    else:
        lines = rest.split("\n")
        body = lines[0]
        if not _clean(body, reference):  # "Answer:" alone on its line: the answer is the next non-empty line
            body = next((line for line in lines[1:] if line.strip()), "")
    return _clean(body, reference)


def _number_in(marked: str) -> str | None:
    """The number a marked answer states: the whole text if it is one, else the number after the last "=",
    else the first number ("7 apples", "x = 7", "3 + 4 = 7")."""
    marked = marked.replace("\u2212", "-")
    whole = normalize_number(marked)
    if whole is not None:
        return whole
    tail = marked.rsplit("=", 1)[-1]
    found = _NUMBER.findall(tail) or _NUMBER.findall(marked)
    return normalize_number(found[0]) if found else None


def _clean(body: str, reference: str | None) -> str:
    """Strip what surrounds an answer: whitespace, bold/italic stars, $...$, \\(...\\), `...`, \\boxed{...},
    quotes, a sentence-final period -- keeping any of these the reference itself has."""
    ref = "" if reference is None else str(reference).strip()
    out = body.strip()
    boxed = _BOXED_INSIDE.findall(out)
    if boxed and not _BOXED_INSIDE.search(ref):
        out = boxed[-1].strip()
    while True:
        before = out
        out = out.strip()
        if not ref.startswith("*") and not ref.endswith("*"):
            out = out.strip("*").strip()
        for left, right in _PAIRS:
            if len(out) >= len(left) + len(right) and out.startswith(left) and out.endswith(right) \
                    and not (ref.startswith(left) and ref.endswith(right)):
                out = out[len(left): len(out) - len(right)]
        latex = _LATEX_WRAPPER.fullmatch(out)
        if latex and not _LATEX_WRAPPER.fullmatch(ref):
            out = latex.group(1)
        for left, right in _QUOTES:
            if len(out) >= 2 and out.startswith(left) and out.endswith(right) and not ref.startswith(left):
                out = out[1:-1]
        if out.endswith(".") and not ref.endswith(".") and not out.endswith(".."):
            out = out[:-1]
        if out == before:
            return out
