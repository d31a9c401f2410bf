"""The pairwise judge's arithmetic against hand-worked values on fixed log-probabilities."""
import math

import pytest
import torch

from selfimprove.models.loading import load_tokenizer
from selfimprove.tasks.judge_pairwise import compare_prompt, first_wins, letter_token_ids, tournament_scores


def test_first_wins_renormalises_over_both_letters_and_their_spellings():
    # vocab: 0="A", 1=" A", 2="other", 3="B"; P(A) = 0.3 + 0.1, P(B) = 0.1 -> 0.4 / 0.5
    win, mass = first_wins(torch.log(torch.tensor([0.3, 0.1, 0.5, 0.1])), {"A": [0, 1], "B": [3]})
    assert win == pytest.approx(0.8) and mass == pytest.approx(0.5)
    assert first_wins(torch.tensor([0.0, -math.inf, -math.inf]), {"A": [1], "B": [2]}) == (0.5, 0.0)


def test_tournament_scores_by_hand():
    # 0 beats 1 in both orders, ties 2; 1 vs 2: 0.2 as A, 2 wins 0.6 as A.
    # 0: (1 + 1 + 0.5 + 0.5) / 4 = 0.75 -> 3.75; 1: (0 + 0 + 0.2 + 0.4) / 4 -> 0.75;
    # 2: (0.5 + 0.5 + 0.8 + 0.6) / 4 -> 3.0
    scores = tournament_scores(3, {(0, 1): 1.0, (1, 0): 0.0, (0, 2): 0.5, (2, 0): 0.5, (1, 2): 0.2, (2, 1): 0.6})
    assert scores == pytest.approx([3.75, 0.75, 3.0])


def test_asking_both_orders_cancels_a_judge_that_always_picks_the_first():
    always_a = {(i, j): 1.0 for i in range(4) for j in range(4) if i != j}
    assert tournament_scores(4, always_a) == pytest.approx([2.5] * 4)
    assert tournament_scores(1, {}) == [None]  # a lone candidate has nobody to beat


def test_prompt_and_letters_on_a_real_tokenizer(tiny_model_dir):
    letters = letter_token_ids(load_tokenizer(tiny_model_dir))
    assert letters["A"] and letters["B"] and not set(letters["A"]) & set(letters["B"])
    text = compare_prompt("What is 2 + 2?", "4", "5")
    assert text.index("<response_A>\n4\n") < text.index("<response_B>\n5\n")


def test_whole_prompt_chunks_keep_groups_together_and_allow_nothing_left():
    from selfimprove.storage.records import Candidate
    from selfimprove.tasks.judge import _chunks

    def cand(prompt_id, i):
        return Candidate(f"{prompt_id}{i}", prompt_id, "train", i, "t", [1], None, None, "q", "q")
    cands = [cand(p, i) for p in "ab" for i in range(3)] + [cand("c", 0)]
    batches = list(_chunks(cands, 4, whole_prompts=True))  # 4 // 3 = one prompt's group per chunk
    assert [[c.generation_id for c in b] for b in batches] == [["a0", "a1", "a2"], ["b0", "b1", "b2"], ["c0"]]
    assert list(_chunks([], 4, whole_prompts=True)) == []  # a resumed, fully judged stage
