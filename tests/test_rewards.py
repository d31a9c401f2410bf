"""Self-reward signals against hand-worked values, and batched-vs-unbatched exactness on a tiny model."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from selfimprove.tasks.rewards import (
    borda_vote,
    completion_logits_stats,
    majority_vote,
    negative_entropy,
    self_certainty,
    verifiable,
)
from selfimprove.tasks.score import combined

LOG2, LOG3 = math.log(2), math.log(3)


def test_verifiable():
    assert verifiable([True, False, None, True]) == [1.0, 0.0, 0.0, 1.0]
    assert verifiable([]) == []


@pytest.mark.parametrize("answers, expected", [
    (["7", "7", "3"], [1.0, 1.0, 0.0]),
    (["7", None, "7", "3", None], [1.0, 0.0, 1.0, 0.0, 0.0]),  # None never votes nor wins
    (["7", "3"], [0.0, 0.0]),                                    # 1-1 tie: no majority
    (["7", "7", "3", "3", "5"], [0.0] * 5),                      # 2-2 tie at the top: no majority
    (["7", "3", "3", "5", "5", "5"], [0, 0, 0, 1.0, 1.0, 1.0]),  # tie below the top is irrelevant
    ([None, None, "9"], [0.0, 0.0, 1.0]),                        # a lone answer beats the Nones
    ([None, None], [0.0, 0.0]),
    ([], []),
])
def test_majority_vote(answers, expected):
    assert majority_vote(answers) == expected


@given(st.lists(st.one_of(st.none(), st.sampled_from("abc")), max_size=12))
@settings(max_examples=200)
def test_majority_vote_rewards_exactly_one_strict_plurality(answers):
    rewards = majority_vote(answers)
    winners = {a for a, r in zip(answers, rewards) if r == 1.0}
    counts = {a: answers.count(a) for a in set(answers) if a is not None}
    strict = [a for a, c in counts.items() if c == max(counts.values()) and list(counts.values()).count(c) == 1]
    assert winners == set(strict)
    assert set(rewards) <= {0.0, 1.0}


def test_uniform_logits():
    # Uniform p = 1/V at every position: KL(U || U) = 0 and H = log V, so negative entropy = -log V.
    # Any constant logit value gives the same distribution.
    assert self_certainty(torch.zeros(3, 4)) == pytest.approx(0.0, abs=1e-7)
    assert self_certainty(torch.full((2, 5), 7.5)) == pytest.approx(0.0, abs=1e-6)
    assert negative_entropy(torch.zeros(3, 4)) == pytest.approx(-math.log(4), rel=1e-6)


def test_skewed_distribution_by_hand():
    # Logits (0, -log 2, -log 2) softmax to p = (1/2, 1/4, 1/4), V = 3.
    # KL(U || p) = -log 3 - (1/3)(log 1/2 + 2 log 1/4) = -log 3 + (1/3)(log 2 + 4 log 2) = (5/3) log 2 - log 3
    #            ~ 0.056633
    # H(p) = (1/2) log 2 + 2 (1/4) log 4 = (1/2) log 2 + log 2 = (3/2) log 2, so negative entropy = -(3/2) log 2.
    skew = torch.tensor([[0.0, -LOG2, -LOG2]])
    assert self_certainty(skew) == pytest.approx(5 / 3 * LOG2 - LOG3, rel=1e-6)
    assert negative_entropy(skew) == pytest.approx(-1.5 * LOG2, rel=1e-6)
    # Shifting all logits of a row by a constant changes nothing.
    assert self_certainty(skew + 3.0) == pytest.approx(5 / 3 * LOG2 - LOG3, rel=1e-5)
    # Mean over positions: rows (skewed, uniform) -> ((5/3) log 2 - log 3 + 0) / 2 and (-(3/2) log 2 - log 3) / 2.
    two = torch.tensor([[0.0, -LOG2, -LOG2], [1.0, 1.0, 1.0]])
    assert self_certainty(two) == pytest.approx((5 / 3 * LOG2 - LOG3) / 2, rel=1e-6)
    assert negative_entropy(two) == pytest.approx((-1.5 * LOG2 - LOG3) / 2, rel=1e-6)


def test_near_one_hot_distribution_by_hand():
    # V = 4, logits (log 97, 0, 0, 0) -> p = (97/100, 1/100, 1/100, 1/100).
    # KL(U || p) = -log 4 - (1/4)(log 0.97 + 3 log 0.01)  ~ 2.074
    # H(p) = -(0.97 log 0.97 + 3 * 0.01 log 0.01)          ~ 0.1677
    logits = torch.tensor([[math.log(97), 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert self_certainty(logits) == pytest.approx(-math.log(4) - (math.log(0.97) + 3 * math.log(0.01)) / 4, rel=1e-9)
    assert negative_entropy(logits) == pytest.approx(0.97 * math.log(0.97) + 0.03 * math.log(0.01), rel=1e-9)
    # Certainty grows and entropy falls as the distribution sharpens.
    sharper = torch.tensor([[math.log(999), 0.0, 0.0, 0.0]])
    assert self_certainty(sharper) > self_certainty(logits) > 0
    assert negative_entropy(sharper) > negative_entropy(logits)


def test_masked_vocabulary_entry():
    # A -inf logit is p = 0: entropy ignores it (0 log 0 = 0) -> p = (1/2, 1/2, 0) gives H = log 2;
    # KL(U || p) is infinite because U puts mass where p has none.
    logits = torch.tensor([[0.0, 0.0, float("-inf")]])
    assert negative_entropy(logits) == pytest.approx(-LOG2, rel=1e-6)
    assert self_certainty(logits) == math.inf


def test_empty_and_bad_shapes():
    assert self_certainty(torch.zeros(0, 10)) == 0.0
    assert negative_entropy(torch.zeros(0, 10)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        self_certainty(torch.zeros(10))


@given(st.integers(1, 4), st.integers(2, 7), st.integers(0, 10_000))
@settings(max_examples=60, deadline=None)
def test_bounds(t, v, seed):
    # KL >= 0 and 0 <= H <= log V for any logits.
    logits = torch.randn(t, v, generator=torch.Generator().manual_seed(seed)) * 4
    assert self_certainty(logits) >= -1e-6
    assert -math.log(v) - 1e-6 <= negative_entropy(logits) <= 1e-6


def test_borda_disagrees_with_majority():
    # Majority: "a" has 3 votes vs 2 for "b".
    # Borda with power 1/2, N = 5: the two "b"s are most certain (ranks 1, 2) -> sqrt(5) + sqrt(4) ~ 4.236;
    # the "a"s take ranks 3, 4, 5 -> sqrt(3) + sqrt(2) + sqrt(1) ~ 4.146. "b" wins.
    answers = ["a", "a", "a", "b", "b"]
    certainties = [0.3, 0.2, 0.1, 0.9, 0.8]
    assert majority_vote(answers) == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert borda_vote(answers, certainties) == [0.0, 0.0, 0.0, 1.0, 1.0]
    # power 1: b = 5 + 4 = 9, a = 3 + 2 + 1 = 6 -> b. power 0: one vote each -> a (3 vs 2), i.e. majority.
    assert borda_vote(answers, certainties, power=1.0) == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert borda_vote(answers, certainties, power=0.0) == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_borda_ties_and_none():
    # power 1, N = 3: "b" (idx 2) ranks 1st -> 3 votes; "a" ranks 2nd, 3rd -> 2 + 1 = 3. Tie -> "b" ranks better.
    assert borda_vote(["a", "a", "b"], [0.1, 0.2, 0.9], power=1.0) == [0.0, 0.0, 1.0]
    # Equal certainties rank by index: idx 0 ("x") is rank 1 with 2 votes, idx 1 ("y") rank 2 with 1 vote.
    assert borda_vote(["x", "y"], [0.5, 0.5], power=1.0) == [1.0, 0.0]
    assert borda_vote(["y", "x"], [0.5, 0.5], power=1.0) == [1.0, 0.0]
    # power 0 with a 1-1 tie: the better-ranked candidate's answer wins (unlike majority_vote).
    assert borda_vote(["x", "y"], [0.1, 0.7], power=0.0) == [0.0, 1.0]
    # None casts no votes and never wins, even when most certain:
    # ranks None(1st, 3 votes, discarded), "c"(2nd, 2 votes), "d"(3rd, 1 vote) -> "c".
    assert borda_vote([None, "d", "c"], [0.9, 0.1, 0.5], power=1.0) == [0.0, 0.0, 1.0]
    assert borda_vote([None, None], [1.0, 2.0]) == [0.0, 0.0]
    assert borda_vote([], []) == []
    with pytest.raises(ValueError):
        borda_vote(["a"], [0.1, 0.2])


def test_combined_reward_weights_signals_and_keeps_a_missing_one_missing():
    signals = {"verifiable": [1.0, 0.0, 1.0], "self_certainty": [2.0, 4.0, 0.0], "judge": [5.0, None, 3.0]}
    # 1*v + 0.5*sc: (1 + 1, 0 + 2, 1 + 0); the unweighted judge signal is ignored, even where missing.
    assert combined(signals, {"verifiable": 1.0, "self_certainty": 0.5}) == [2.0, 2.0, 1.0]
    # A weighted signal that is missing (an unparsed judgment) leaves the candidate unscored, not 0.
    assert combined(signals, {"judge": 1.0, "verifiable": 1.0}) == [6.0, None, 4.0]


def _reference_stats(model, prompt, completion):
    """One unbatched, unmasked forward pass; the formulas written out independently of tasks.rewards."""
    if not completion:
        return 0.0, 0.0
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + completion])).logits[0].double()
    rows = logits[len(prompt) - 1:len(prompt) + len(completion) - 1]
    assert rows.shape[0] == len(completion)
    logp = torch.log_softmax(rows, dim=-1)
    sc = (-math.log(rows.shape[-1]) - logp.mean(-1)).mean().item()
    ne = (logp.exp() * logp).sum(-1).mean().item()
    return sc, ne


def test_completion_logits_stats_batched_matches_unbatched(tiny_model_dir):
    from selfimprove.models.loading import load_model, load_tokenizer

    model = load_model(tiny_model_dir, "float32").eval()
    # The random tiny model is nearly uniform (self-certainty ~0.03), which would let a wrong
    # position or a padding leak hide under the 1e-4 tolerance. Scaling the final norm scales
    # every logit by 8: sharp, position-dependent distributions, same code path.
    with torch.no_grad():
        model.model.norm.weight.mul_(8.0)
    tokenizer = load_tokenizer(tiny_model_dir)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)

    def rand(n):
        return torch.randint(0, vocab, (n,), generator=g).tolist()

    # Ragged prompt and completion lengths so every batch pads, plus an empty completion.
    shapes = [(3, 5), (9, 2), (1, 7), (6, 0), (4, 4), (12, 1), (2, 10)]
    prompts = [rand(p) for p, _ in shapes]
    completions = [rand(c) for _, c in shapes]
    batched = completion_logits_stats(model, prompts, completions, tokenizer.pad_token_id, batch_size=3)
    single = completion_logits_stats(model, prompts, completions, tokenizer.pad_token_id, batch_size=1)
    assert len(batched) == len(shapes)
    for got, one, p, c in zip(batched, single, prompts, completions):
        want = _reference_stats(model, p, c)
        assert got == pytest.approx(want, abs=1e-4)
        assert one == pytest.approx(want, abs=1e-4)
    assert batched[3] == (0.0, 0.0)
    # A random model is not uniform: the values are real, not trivially zero, and within bounds.
    for sc, ne in (s for s, (_, c) in zip(batched, shapes) if c):
        assert sc > 1.0
        assert -math.log(vocab) <= ne < 0
    # Off-by-one guard: reading one position late would give different numbers.
    shifted = _reference_stats(model, prompts[0] + completions[0][:1], completions[0][1:])
    assert batched[0] != pytest.approx(shifted, abs=1e-4)


def test_completion_logits_stats_errors(tiny_model_dir):
    from selfimprove.models.loading import load_model

    model = load_model(tiny_model_dir, "float32").eval()
    with pytest.raises(ValueError, match="prompt"):
        completion_logits_stats(model, [[]], [[1, 2]], pad_id=0)
    with pytest.raises(ValueError, match="completions"):
        completion_logits_stats(model, [[1]], [], pad_id=0)
    assert completion_logits_stats(model, [[1, 2], [3]], [[], []], pad_id=0) == [(0.0, 0.0), (0.0, 0.0)]
