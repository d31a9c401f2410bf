"""The pairwise judge (judge.mode: pairwise): the model compares two of a prompt's candidates at a
time instead of scoring each alone.

For every ordered pair (a, b) of one prompt's candidates, the assistant turn is pre-filled with
"Better response:" and P(a wins) = P("A") / (P("A") + P("B")) is read from the next-token
distribution (one teacher-forced pass, like the logprob judge). Each pair is asked in both orders,
so a judge that always prefers the first position scores every candidate the same. A candidate's
score is 5 x its mean win probability over all its comparisons: on the rubric's 0-5 scale, so
pairs.min_margin and the reward signals read it as they read the pointwise judge. Scores are
relative to the prompt's other candidates, which is why the config allows this mode only where
all compared candidates are judged together (method self_rewarding, not GRPO).
"""
from __future__ import annotations

import json
import math

from selfimprove.models.loading import chat_prompt_ids

COMPARE = """Two assistants answered the user's question below. Decide which response is better: correct first, then complete, then concise.

<question>
{question}
</question>

<response_A>
{a}
</response_A>

<response_B>
{b}
</response_B>

Reply with a single letter: A or B."""  # noqa: E501

PREFIX = "Better response:"


def compare_prompt(question: str, a: str, b: str) -> str:
    return COMPARE.replace("{question}", question).replace("{a}", a).replace("{b}", b)


def letter_token_ids(tokenizer) -> dict[str, list[int]]:
    """The single-token spellings of "A" and "B" that can follow the prefix ("A" and " A")."""
    ids = {}
    for letter in ("A", "B"):
        encoded = [tokenizer.encode(s, add_special_tokens=False) for s in (letter, f" {letter}")]
        options = {enc[0] for enc in encoded if len(enc) == 1}
        if not options:
            raise ValueError(f"tokenizer has no single token for '{letter}'")
        ids[letter] = sorted(options)
    return ids


def first_wins(logprobs_row, letters: dict[str, list[int]]) -> tuple[float, float]:
    """(P(A) / (P(A) + P(B)), P(A) + P(B)) from one row of next-token log-probabilities; 0.5 when
    the judge puts no mass on either letter.

    >>> import torch
    >>> win, mass = first_wins(torch.log(torch.tensor([0.3, 0.1, 0.5, 0.1])), {"A": [0, 1], "B": [3]})
    >>> round(win, 6), round(mass, 6)
    (0.8, 0.5)
    """
    p = {k: sum(math.exp(float(logprobs_row[i])) for i in ids) for k, ids in letters.items()}
    mass = p["A"] + p["B"]
    return (p["A"] / mass if mass > 0 else 0.5), mass


def tournament_scores(n: int, first_win_prob: dict[tuple[int, int], float]) -> list[float | None]:
    """Each candidate's 5 x mean win probability; first_win_prob[(i, j)] = P(i beats j | i shown as A).

    >>> [round(s, 6) for s in tournament_scores(3, {(0, 1): 1.0, (1, 0): 0.0, (0, 2): 0.5, (2, 0): 0.5,
    ...                                             (1, 2): 0.2, (2, 1): 0.6})]
    [3.75, 0.75, 3.0]
    """
    wins: list[list[float]] = [[] for _ in range(n)]
    for (i, j), p in first_win_prob.items():
        wins[i].append(p)
        wins[j].append(1.0 - p)
    return [5.0 * sum(w) / len(w) if w else None for w in wins]


def judge_groups(scorer, tokenizer, groups: list[tuple[str, list[str]]]) -> list[list[tuple[str, float | None]]]:
    """For each (question, candidate texts) group, per candidate (raw JSON, score). `scorer` reads
    next-token log-probabilities (tasks/judge.py: judge_scorer)."""
    letters = letter_token_ids(tokenizer)
    asks = [(g, i, j) for g, (_, texts) in enumerate(groups)
            for i in range(len(texts)) for j in range(len(texts)) if i != j]
    ids = [chat_prompt_ids(tokenizer, compare_prompt(groups[g][0], groups[g][1][i], groups[g][1][j]), PREFIX)
           for g, i, j in asks]
    rows = scorer(ids, sorted({t for options in letters.values() for t in options})) if ids else []
    per_group: list[dict] = [{} for _ in groups]
    mass: list[list[float]] = [[] for _ in groups]
    for (g, i, j), row in zip(asks, rows):
        per_group[g][(i, j)], m = first_wins(row, letters)
        mass[g].append(m)
    out = []
    for g, (_, texts) in enumerate(groups):
        scores = tournament_scores(len(texts), per_group[g])
        out.append([(json.dumps({"mode": "pairwise", "position": i, "score": s,
                                 "first_win_prob": {f"{a}>{b}": p for (a, b), p in per_group[g].items() if i in (a, b)},
                                 "letter_mass_mean": sum(mass[g]) / len(mass[g]) if mass[g] else None}), s)
                    for i, s in enumerate(scores)])
    return out
