"""The judge bootstrap's data (split, balance, mix) and the judge-quality guard, as pure logic."""
import json

import pytest

from selfimprove.config import DataConfig, load_config
from selfimprove.storage.records import Candidate
from selfimprove.tasks.bootstrap import generation_examples, judge_examples, right_answer_examples
from selfimprove.tasks.data import DataError, build_splits
from selfimprove.tasks.judge_probe import JudgeQualityError, check_judge_quality

ARITHMETIC = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}


def _questions(rows):
    return {r["question"] for r in rows}


def test_seed_and_probe_splits_never_overlap_train_or_heldout_and_leave_them_unchanged():
    cfg = DataConfig(train_size=30, eval_size=40, task_args=ARITHMETIC)
    plain = build_splits(cfg)
    splits = build_splits(cfg, {"seed": 50, "probe": 20})
    assert {k: len(v) for k, v in splits.items()} == {"train": 30, "heldout": 40, "seed": 50, "probe": 20}
    assert splits["train"] == plain["train"] and splits["heldout"] == plain["heldout"]
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not _questions(splits[a]) & _questions(splits[b]), (a, b)
    assert all(r["answer"] is not None for r in splits["seed"] + splits["probe"])


def test_file_source_splits_are_disjoint_and_unlabelled_seed_items_are_refused(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"question": f"What is {i} + 2?", "answer": str(i + 2)} for i in range(30)]
    rows += [{"question": "What is 3 + 2?", "answer": "5"}]  # a duplicate never lands in two splits
    path.write_text("\n".join(json.dumps(r) for r in rows))
    splits = build_splits(DataConfig(source="jsonl", path=str(path), train_size=10, eval_size=10), {"seed": 8})
    assert sum(len(v) for v in splits.values()) == 28
    assert len(set().union(*(_questions(v) for v in splits.values()))) == 28
    path.write_text("\n".join(json.dumps({"question": f"q{i}?"}) for i in range(30)))
    with pytest.raises(DataError, match="seed split: 8 items have no reference answer"):
        build_splits(DataConfig(source="jsonl", path=str(path), train_size=10, eval_size=10), {"seed": 8})


def _candidate(i: int, prompt: str, text: str, correct: bool | None) -> Candidate:
    return Candidate(f"g{i}", prompt, "bootstrap_sample", i, text, [], None, correct, f"P {prompt}", f"Q {prompt}")


def test_judge_examples_are_balanced_labelled_and_count_a_repeated_answer_once():
    samples = [_candidate(i, f"p{i // 4}", f"answer {i}", (i % 4) == 0) for i in range(40)]  # 10 right
    samples.append(_candidate(99, "p0", "answer 0", True))  # the same text as g0 on the same prompt
    examples = judge_examples("r", "verify", samples, 100, seed=0)
    right = [e for e in examples if e.label]
    assert len(right) == len(examples) - len(right) == 10
    assert all(e.kind == "judge" and e.completion == ("yes" if e.label else "no") for e in examples)
    assert all(e.wrong_completion == ("no" if e.label else "yes") for e in examples)
    assert "Proposed answer: answer" in examples[0].user_text
    assert len(judge_examples("r", "verify", samples, 6, seed=0)) == 6  # the limit, still half and half
    logprob = judge_examples("r", "logprob", samples, 4, seed=0)
    assert {e.completion for e in logprob} == {"Score: 5", "Score: 1"} and "additive 5-point" in logprob[0].user_text


def test_pairwise_judge_examples_name_the_right_answer_in_both_positions():
    samples = [_candidate(2 * p + k, f"p{p}", f"text {k}", k == 0) for p in range(40) for k in (0, 1)]
    examples = judge_examples("r", "pairwise", samples, 100, seed=0)
    assert len(examples) == 40
    for e in examples:
        right_letter = "A" if e.label else "B"
        assert e.completion == f"Better response: {right_letter}"
        a_text = e.user_text.split("<response_A>\n")[1].split("\n</response_A>")[0]
        assert a_text == ("text 0" if e.label else "text 1")
    assert 10 < sum(e.label for e in examples) < 30  # the right answer is not always first


def test_generation_examples_keep_the_models_own_answers_without_labels():
    greedy = [_candidate(0, "p0", "12", False), _candidate(1, "p1", "  ", None), _candidate(2, "p2", "7", True)]
    examples = generation_examples("r", greedy)
    assert [(e.prompt_id, e.user_text, e.completion, e.label) for e in examples] == [
        ("p0", "P p0", "12", None), ("p2", "P p2", "7", None)]


def test_right_answer_generation_examples_keep_one_right_answer_per_prompt_greedy_first():
    def c(i, prompt, purpose, text, correct):
        return Candidate(f"g{i}", prompt, purpose, i, text, [], None, correct, f"P {prompt}", f"Q {prompt}")
    candidates = [c(0, "p0", "bootstrap_sample", "sampled right", True),
                  c(1, "p0", "bootstrap_greedy", "greedy right", True),
                  c(2, "p1", "bootstrap_sample", "wrong", False), c(3, "p1", "bootstrap_sample", "right", True),
                  c(4, "p1", "bootstrap_sample", "right again", True), c(5, "p2", "bootstrap_greedy", "wrong", False),
                  c(6, "p3", "bootstrap_sample", " ", True)]
    examples = right_answer_examples("r", candidates)
    assert sorted((e.prompt_id, e.completion) for e in examples) == [("p0", "greedy right"), ("p1", "right")]
    assert all(e.kind == "generation" and e.user_text == f"P {e.prompt_id}" for e in examples)
    assert load_config(overrides=["bootstrap.generation_answers=right"]).bootstrap.generation_answers == "right"


def test_the_guard_warns_or_stops_below_the_floor(caplog):
    cfg = load_config(overrides=["judge.probe_size=10", "judge.min_probe_auc=0.7"])
    assert check_judge_quality(cfg, 1, 0.8) is False
    assert check_judge_quality(cfg, 1, 0.5) is True and "judge.min_probe_auc" in caplog.text
    cfg = load_config(overrides=["judge.probe_size=10", "judge.min_probe_auc=0.7", "judge.on_low_auc=stop"])
    with pytest.raises(JudgeQualityError, match="AUC on the probe is 0.500"):
        check_judge_quality(cfg, 1, 0.5)
    with pytest.raises(JudgeQualityError, match="undefined"):
        check_judge_quality(cfg, 1, None)
    assert check_judge_quality(load_config(), 1, 0.1) is False  # no floor configured


def test_bootstrap_and_guard_config_rules():
    from selfimprove.config import ConfigError

    with pytest.raises(ConfigError, match="bootstrap.enabled"):
        load_config(overrides=["bootstrap.enabled=true"])
    with pytest.raises(ConfigError, match="judge.min_probe_auc"):
        load_config(overrides=["judge.min_probe_auc=0.7"])
    load_config(overrides=["bootstrap.enabled=true", "judge.probe_size=50", "judge.mode=verify"])


def test_the_probe_runs_only_where_the_judge_is_part_of_the_reward():
    from selfimprove.methods.base import Method
    from selfimprove.tasks.judge_probe import probes_judge

    judged = load_config(overrides=["judge.probe_size=50"])
    voted = load_config(overrides=["judge.probe_size=50", "reward.signals=[{name: majority_vote, weight: 1.0}]"])
    unsized = load_config(overrides=["judge.probe_size=0"])
    assert (probes_judge(judged), probes_judge(voted), probes_judge(unsized)) == (True, False, False)
    assert Method().stages(judged)[0] == "judge_probe" and "judge_probe" not in Method().stages(voted)
