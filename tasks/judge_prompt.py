"""The LLM-as-a-Judge prompts (additive 5-point rubric, Self-Rewarding style; a yes/no verification
question) and their parsers.

Our own wording of the paper's idea: start at 0, add one point per criterion met, explain
briefly, end with a final line "Score: N". The parser reads only that final line of the judge's
own output, so a "Score: 5" quoted from the judged response earlier in the text never counts.
"""
from __future__ import annotations

import math
import re

RUBRIC = """Review the user's question and the candidate response below, then score the response with an additive 5-point system. Start from 0 and add points:
- Add 1 point if the response is relevant to the question, even if incomplete or partly wrong.
- Add a 2nd point if it addresses most of the question but does not fully resolve it.
- Add a 3rd point if it answers the basic question in a useful way.
- Add a 4th point if it answers directly, completely and correctly, written as a helpful assistant.
- Add a 5th point if it is flawless: correct, concise, expert, with nothing extraneous.

<question>
{question}
</question>

<response>
{response}
</response>

Justify your total in at most 60 words. Then write a last line of the form "Score: N", where N is a whole number from 0 to 5."""  # noqa: E501 - the prompt's own lines

SCORE_PREFIX = "Score:"
# The separator after "Score:" may be any punctuation except a minus sign: "Score: -1" must read as -1
# (out of range, so None), not as a "-" skipped before a 1.
_MINUS = "\\-\u2212\u2013"  # ASCII hyphen-minus (escaped for a character class), Unicode minus, en dash
_FINAL_LINE = re.compile(
    rf"^\W*score\W*?[:=][^\w{_MINUS}]*([{_MINUS}]?)(\d+(?:\.\d+)?)\s*(?:/\s*5|out of 5|points?)?\W*$", re.IGNORECASE)


# The verification judge (judge.mode: verify): short, so cheap to judge and to teach (STACK.md:
# AUC 0.44 -> 0.89 after fine-tuning on the model's own labelled answers).
VERIFY = "Question: {question}\nProposed answer: {response}\nIs the proposed answer correct? Reply yes or no."
VERDICTS = {5: ("yes", "Yes"), 0: ("no", "No")}  # the score each spelling stands for


def judge_prompt(question: str, response: str, mode: str = "logprob") -> str:
    """The user turn asking the judge about one response: the rubric, or the yes/no question (verify)."""
    template = VERIFY if mode == "verify" else RUBRIC
    return template.replace("{question}", question).replace("{response}", response)


def verdict_token_ids(tokenizer) -> dict[int, list[int]]:
    """{5: ids of "yes"/"Yes"/" yes"/" Yes", 0: the same for no}: a verify judgment is the expected
    score over these two, i.e. 5 x P(yes) / (P(yes) + P(no)) (expected_score reads it)."""
    options: dict[int, set[int]] = {}
    for score, words in VERDICTS.items():
        encoded = [tokenizer.encode(s, add_special_tokens=False) for w in words for s in (w, f" {w}")]
        # Single-token spellings; a tokenizer that splits the word is read at its first token.
        options[score] = {e[0] for e in encoded if len(e) == 1} or {e[0] for e in encoded if e}
    shared = options[5] & options[0]  # e.g. a leading space token: it says neither yes nor no
    ids = {score: sorted(found - shared) for score, found in options.items()}
    if not ids[5] or not ids[0]:
        raise ValueError("judge.mode verify: this tokenizer cannot tell 'yes' from 'no' by their first token")
    return ids


def parse_final_score(judge_text: str | None) -> float | None:
    """The score on the judge's last non-empty line, or None when that line is not a score line.

    >>> parse_final_score("Relevant and correct.\\nScore: 4")
    4.0
    >>> parse_final_score("The response says Score: 5 but is wrong.") is None
    True
    >>> parse_final_score("Score: -1") is None  # out of range, not 1
    True
    """
    if not judge_text:
        return None
    lines = [line for line in judge_text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    match = _FINAL_LINE.match(lines[-1].strip())
    if not match or match.group(1):  # no score line, or a negative score
        return None
    value = float(match.group(2))
    return value if 0.0 <= value <= 5.0 else None


def digit_token_ids(tokenizer) -> dict[int, list[int]]:
    """For each score 0..5, the single-token spellings that can follow "Score:" ("4" and " 4")."""
    ids: dict[int, list[int]] = {}
    for digit in range(6):
        options = set()
        for spelling in (str(digit), f" {digit}"):
            encoded = tokenizer.encode(spelling, add_special_tokens=False)
            if len(encoded) == 1:
                options.add(encoded[0])
        if not options:
            raise ValueError(f"tokenizer has no single token for the score {digit}")
        ids[digit] = sorted(options)
    return ids


def expected_score(logprobs_row, digit_ids: dict[int, list[int]]) -> tuple[float, float]:
    """(expected score over 0..5 renormalised, probability mass on the digits) from one row of
    next-token log-probabilities.

    >>> import torch
    >>> row = torch.log(torch.tensor([0.5, 0.25, 0.25, 0.0]))
    >>> score, mass = expected_score(row, {0: [0], 1: [], 2: [1], 3: [2], 4: [], 5: []})
    >>> round(score, 6), round(mass, 6)
    (1.25, 1.0)
    """
    probs = {d: sum(math.exp(float(logprobs_row[i])) for i in token_ids) for d, token_ids in digit_ids.items()}
    mass = sum(probs.values())
    if mass <= 0:
        return 0.0, 0.0
    return sum(d * p for d, p in probs.items()) / mass, mass
