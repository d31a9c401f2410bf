"""Self-reward signals: one float per candidate in the group sampled for ONE prompt.

Verifiable (gold-answer check), consensus (majority vote, MM-UPT / TTRL style), model-intrinsic
confidence (self-certainty, Kang et al. 2025; negative entropy, EMPO style), and the two mixed:
self-certainty-weighted Borda voting. The LLM judge ("judge") is computed in tasks/judge.py; the
weighted combination of signals is tasks/score.py.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict

import torch


def verifiable(correct: list[bool | None]) -> list[float]:
    """1.0 for a candidate checked correct; unparseable (None) counts as wrong.

    >>> verifiable([True, False, None])
    [1.0, 0.0, 0.0]
    """
    return [1.0 if c is True else 0.0 for c in correct]


def majority_vote(answers: list[str | None]) -> list[float]:
    """1.0 for candidates whose answer is the strict plurality among non-None answers, else 0.0.

    Tie rule: when two or more answers share the top count there is no majority and every
    candidate gets 0.0 (rewarding one side of a coin flip would teach noise). This differs on
    purpose from `tasks.evaluate.majority_answer`, which must always report some maj@k answer.
    None never wins; all-None gives all 0.0.

    >>> majority_vote(["4", "4", "3", None])
    [1.0, 1.0, 0.0, 0.0]
    >>> majority_vote(["4", "3", None])
    [0.0, 0.0, 0.0]
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return [0.0] * len(answers)
    (winner, top), *rest = counts.most_common()
    if rest and rest[0][1] == top:
        return [0.0] * len(answers)
    return [1.0 if a == winner else 0.0 for a in answers]


def _logit_stats(logits) -> tuple[float, float]:
    """(mean self-certainty, mean negative entropy) over the rows of next-token logits [T, V]."""
    logits = torch.as_tensor(logits)
    if logits.ndim != 2:
        raise ValueError(f"expected logits of shape [T, V], got {tuple(logits.shape)}")
    if logits.shape[0] == 0:
        return 0.0, 0.0
    # float32 at least: bf16 log-probabilities of a 50k vocabulary are far too coarse.
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    vocab = logits.shape[-1]
    # KL(U || p) = sum_j (1/V) log((1/V) / p_j) = -log V - mean_j log p_j.
    certainty = -math.log(vocab) - logp.mean(dim=-1)
    # p log p with p == 0 is 0 by continuity; guard against 0 * -inf = nan for masked tokens.
    p = logp.exp()
    plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))
    return float(certainty.mean()), float(plogp.sum(dim=-1).mean())


def self_certainty(logits) -> float:
    """Mean over generated positions of KL(Uniform || p_t): 0 for a uniform model, larger when
    confident. A vocabulary entry with p = 0 (logit -inf) makes it +inf. Empty -> 0.0.

    >>> self_certainty(torch.zeros(5, 4))
    0.0
    >>> round(self_certainty(torch.tensor([[0.0, -math.log(2), -math.log(2)]])), 6)  # p = 1/2, 1/4, 1/4
    0.056633
    """
    return _logit_stats(logits)[0]


def negative_entropy(logits) -> float:
    """Minus the mean over generated positions of the token entropy H(p_t); higher = more
    confident, at most 0. Empty -> 0.0.

    >>> round(negative_entropy(torch.zeros(2, 4)), 6) == round(-math.log(4), 6)
    True
    """
    return _logit_stats(logits)[1]


def borda_vote(answers: list[str | None], certainties: list[float], power: float = 0.5) -> list[float]:
    """Self-certainty-weighted Borda voting: 1.0 for candidates holding the winning answer.

    Candidates are ranked by certainty (rank 1 = most certain; equal certainties: lower index
    ranks first); rank r casts (N - r + 1) ** power votes for its answer, None casts none. Tie
    rule: answers whose totals agree (to float rounding) are tied, and the tie goes to the answer
    of the best-ranked candidate among them. power=0 is plain majority with that tie-break; a
    large power approaches "trust the single most certain candidate". All-None -> all 0.0.

    >>> borda_vote(["a", "a", "b"], [0.1, 0.2, 0.9], power=1.0)  # a: 2+1, b: 3 -> tie -> b ranks 1st
    [0.0, 0.0, 1.0]
    """
    if len(answers) != len(certainties):
        raise ValueError(f"{len(answers)} answers but {len(certainties)} certainties")
    n = len(answers)
    order = sorted(range(n), key=lambda i: (-certainties[i], i))
    votes: dict[str, float] = defaultdict(float)
    for rank, i in enumerate(order, start=1):
        if answers[i] is not None:
            votes[answers[i]] += (n - rank + 1) ** power
    if not votes:
        return [0.0] * n
    top = max(votes.values())
    tied = {a for a, v in votes.items() if math.isclose(v, top, rel_tol=1e-9, abs_tol=1e-12)}
    winner = next(answers[i] for i in order if answers[i] in tied)
    return [1.0 if a == winner else 0.0 for a in answers]


def completion_logits_stats(model, prompts: list[list[int]], completions: list[list[int]], pad_id: int,
                            batch_size: int = 8) -> list[tuple[float, float]]:
    """(self_certainty, negative_entropy) of each completion given its prompt, from one
    teacher-forced forward pass per batch over prompt + completion (right-padded).

    Right padding keeps every real token at the same position ids as in an unbatched pass, and
    causal attention never looks ahead at the pads, so the result equals a one-at-a-time pass.
    The token at position i is predicted by the logits at i - 1, hence the slice
    len(prompt) - 1 .. len(prompt) + len(completion) - 2. An empty completion gives (0.0, 0.0).
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token to predict the completion's first token")
    device = next(model.parameters()).device
    stats: list[tuple[float, float]] = []
    for start in range(0, len(prompts), batch_size):
        batch = list(zip(prompts[start:start + batch_size], completions[start:start + batch_size]))
        if all(not c for _, c in batch):
            stats.extend((0.0, 0.0) for _ in batch)
            continue
        seqs = [p + c for p, c in batch]
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs], device=device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
        # Only positions from the shortest prompt's last token on are ever read: skip the rest of
        # the [B, L, V] logits, which dominate memory for long prompts and large vocabularies.
        keep = width - min(len(p) for p, _ in batch) + 1
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
        offset = width - logits.shape[1]  # column j of `logits` is sequence position offset + j
        for row, (p, c) in enumerate(batch):
            first = len(p) - 1 - offset
            stats.append(_logit_stats(logits[row, first:first + len(c)]))
    return stats
