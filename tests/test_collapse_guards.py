"""Collapse guards: the chosen side must carry an answer, pair statistics per iteration, the gate's
collapse check, and DPO's NLL term on the chosen response (train.sft_weight)."""
import logging

import pytest

from selfimprove.config import Config, ConfigError, GateConfig, TrainConfig, config_from_dict, load_config
from selfimprove.methods.base import StageContext
from selfimprove.methods.bstar import BStar
from selfimprove.storage.db import Store
from selfimprove.storage.records import (
    BstarGridRow,
    Evaluation,
    Generation,
    Iteration,
    Prompt,
    Reward,
)
from selfimprove.tasks.bstar import ProbeSample, select_samples
from selfimprove.tasks.build import PAIR_STATISTICS, Ranked, build_pairs, select_pair
from selfimprove.tasks.gate import gate_iteration
from selfimprove.tasks.results import BuildResult, from_json
from selfimprove.tasks.train import dpo_args


def c(gid, idx, score, answered=True, text=None):
    return Ranked(gid, idx, text if text is not None else f"text {gid}", score, answered)


# ---- 1. a chosen response must contain an answer ---------------------------------------------------
def test_answerless_top_candidate_is_never_chosen_the_next_answered_one_is():
    cands = [c("empty", 0, 5.0, False, ""), c("good", 1, 4.0), c("mid", 2, 3.0), c("bad", 3, 1.0, False)]
    chosen, rejected = select_pair(cands, 0.5)
    assert (chosen.generation_id, rejected.generation_id) == ("good", "bad")  # the worst of all may lack one
    # The option off: the old rule, best vs worst by score alone.
    chosen, _ = select_pair(cands, 0.5, must_answer=False)
    assert chosen.generation_id == "empty"


def test_no_answered_candidate_drops_the_prompt_with_its_reason():
    assert select_pair([c("a", 0, 5.0, False), c("b", 1, 1.0, False)], 0.0) == "no_answered_candidate"
    # Answered candidates exist but share the lowest score: nothing to prefer them over.
    assert select_pair([c("a", 0, 5.0, False), c("b", 1, 1.0), c("c", 2, 1.0)], 0.0) == "answered_not_above_worst"
    # The earlier reasons keep their precedence.
    assert select_pair([c("a", 0, 2.0, False), c("b", 1, 2.0, False)], 0.0) == "all_tied"
    assert select_pair([c("a", 0, 2.0, False)], 0.0) == "fewer_than_two_scored"


def test_temporal_chosen_sides_skip_answerless_candidates():
    from selfimprove.methods.temporal import anchored_pair, future_guided

    current = [c("c0", 0, 5.0, False, ""), c("c1", 1, 3.0)]
    chosen, rejected, source = anchored_pair(current, [c("p0", 0, 1.0, False, "")], 0.1)
    assert (chosen.generation_id, rejected.generation_id, source) == ("c1", "p0", "past")
    assert anchored_pair([c("c0", 0, 5.0, False), c("c1", 1, 1.0, False)], [], 0.1) == "no_answered_candidate"
    assert future_guided(chosen, [c("f0", 0, 9.0, False, ""), c("f1", 1, 4.0)])[0].generation_id == "f1"
    assert future_guided(chosen, [c("f0", 0, 9.0, False, "")]) == (chosen, False)


def test_bstar_selection_skips_answerless_samples():
    q = [ProbeSample("", None, 1.0, None), ProbeSample("x", None, 0.9, None), ProbeSample(" ", "4", 0.9, None),
         ProbeSample("so 4", "4", 0.8, None)]
    assert select_samples([q], 0.5) == [[0, 1, 3]]  # " " is a duplicate of "" (stripped)
    assert select_samples([q], 0.5, require_answer=True) == [[3]]


# ---- DuckDB fixtures ----------------------------------------------------------------------------------
def gen(run, it, pid, i, text, answer, tokens, purpose="train"):
    return Generation(f"{run}:{it}:{purpose}:{pid}:{i}", run, it, purpose, pid, i, "/m", "h", "vllm", 0.8, text,
                      list(range(tokens)), None, "stop", tokens, answer, None)


def seed_store(tmp_path, groups, purpose="train"):
    """A Store holding, per prompt, candidates given as (text, extracted_answer, num_tokens, reward)."""
    store = Store(tmp_path / "p.duckdb")
    store.add([Prompt("r", pid, "train", "jsonl", "q", None, "q", "{}") for pid in groups])
    rows = [gen("r", 1, pid, i, *spec[:3], purpose=purpose) for pid, specs in groups.items()
            for i, spec in enumerate(specs)]
    store.add(rows)
    store.add([Reward("r", 1, g.generation_id, "reward", spec[3])
               for g, spec in zip(rows, [s for specs in groups.values() for s in specs])])
    return store


GROUPS = {"p0": [("", None, 0, 5.0), ("Answer: 12", "12", 8, 4.0), ("hmm", None, 2, 1.0)],
          "p1": [("The answer is 3", "3", 10, 4.0), ("3?", "3", 4, 2.0)],
          "p2": [("", None, 0, 5.0), ("...", None, 1, 1.0)]}


# ---- 3. pair statistics per iteration ------------------------------------------------------------------
def test_build_skips_answerless_chosen_and_writes_pair_statistics(tmp_path):
    store = seed_store(tmp_path, GROUPS)
    result = build_pairs(store, Config(), "r", 1)
    pairs = {p.prompt_id: p for p in store.pairs("r", 1)}
    assert pairs["p0"].chosen_generation_id == "r:1:train:p0:1"  # not the empty top-scored one
    assert pairs["p0"].rejected_generation_id == "r:1:train:p0:2"
    assert result.drop_reasons == {"no_answered_candidate": 1} and result.pairs == 2
    expected = {"chosen_tokens": 9.0, "rejected_tokens": 3.0, "chosen_answer_rate": 1.0, "rejected_answer_rate": 0.5}
    rows = {r.metric: r.value for r in store.evaluations("r") if r.split == "pairs"}
    assert rows == expected and set(rows) == set(PAIR_STATISTICS)
    assert {k: getattr(result, k) for k in expected} == expected
    assert {k: v for k, v in result.metrics().items() if k in expected} == expected  # -> MLflow pairs/<name>
    assert from_json(result.to_json()) == result
    # A rebuilt stage (resume) adds no second set of rows.
    build_pairs(store, Config(), "r", 1)
    assert len([r for r in store.evaluations("r") if r.split == "pairs"]) == 4


def test_build_with_the_option_off_keeps_the_old_rule(tmp_path):
    store = seed_store(tmp_path, GROUPS)
    cfg = Config()
    cfg.pairs.chosen_must_answer = False
    result = build_pairs(store, cfg, "r", 1)
    assert {p.prompt_id: p.chosen_generation_id for p in store.pairs("r", 1)}["p0"] == "r:1:train:p0:0"
    assert result.pairs == 3 and result.chosen_answer_rate == pytest.approx(1 / 3)


def test_no_pairs_no_statistics_rows(tmp_path):
    store = seed_store(tmp_path, {"p2": GROUPS["p2"]})
    result = build_pairs(store, Config(), "r", 1)
    assert result.pairs == 0 and result.chosen_tokens is None
    assert [r for r in store.evaluations("r") if r.split == "pairs"] == []
    assert "chosen_tokens" not in result.metrics()
    # An old ledger entry without the new fields still reads back.
    assert from_json('{"type": "BuildResult", "pairs": 1}') == BuildResult(pairs=1)


def test_bstar_sft_selection_skips_answerless_samples(tmp_path):
    store = seed_store(tmp_path, {"p0": [("", None, 0, 5.0), ("Answer: 12", "12", 8, 4.0), ("7", None, 1, 4.5)]})
    store.add([BstarGridRow("r", 1, 1.0, 3.0, 0.5, 2.0, None, True)])
    cfg = config_from_dict({"method": {"name": "bstar"}, "train": {"algorithm": "sft"}})
    result = BStar().build(StageContext(store, cfg, "r", 1, ""))
    assert result.sft_examples == 1
    assert [e.generation_id for e in store.sft_texts("r", 1)] == ["r:1:train:p0:1"]


# ---- 4. collapse detection in the gate -------------------------------------------------------------------
def gate_store(tmp_path, seed, new):
    """Iterations 0 and 1 with held-out (accuracy_greedy, mean_response_tokens, no_answer_rate)."""
    store = Store(tmp_path / "g.duckdb")
    store.add([Iteration("r", 0, "/seed", "s"), Iteration("r", 1, "/m1", "h1")])
    store.add([Evaluation("r", it, "heldout", name, value, "x") for it, values in ((0, seed), (1, new))
               for name, value in zip(("accuracy_greedy", "mean_response_tokens", "no_answer_rate"), values)])
    return store


def gate_cfg(enabled):
    return config_from_dict({"gate": {"enabled": enabled}})


def ratio(store, it):
    return store.metric("r", it, "heldout", "length_ratio_to_seed")


def test_gate_rejects_a_collapsed_model_whatever_its_accuracy(tmp_path):
    store = gate_store(tmp_path, seed=(0.2, 20.0, 0.0), new=(0.9, 6.0, 0.0))  # much better, but 30% of the length
    seed = gate_iteration(store, gate_cfg(True), "r", 0)
    assert seed.accepted and not seed.collapsed and ratio(store, 0) == 1.0
    result = gate_iteration(store, gate_cfg(True), "r", 1)
    assert not result.accepted and result.collapsed and result.champion_iteration == 0
    assert result.model_dir == "/seed" and result.reason.startswith("collapsed: length_ratio_to_seed 0.3 < 0.5")
    assert ratio(store, 1) == pytest.approx(0.3) and store.iteration("r", 1).accepted is False


def test_gate_rejects_on_no_answer_rate(tmp_path):
    store = gate_store(tmp_path, seed=(0.2, 20.0, 0.0), new=(0.9, 20.0, 0.2))
    result = gate_iteration(store, gate_cfg(True), "r", 1)
    assert not result.accepted and result.collapsed and "no_answer_rate 0.2 > 0.05" in result.reason


def test_gate_off_accepts_a_collapsed_model_with_a_warning(tmp_path, caplog):
    store = gate_store(tmp_path, seed=(0.2, 20.0, 0.0), new=(0.1, 4.0, 0.5))
    with caplog.at_level(logging.WARNING, logger="selfimprove"):
        result = gate_iteration(store, gate_cfg(False), "r", 1)
    assert result.accepted and result.collapsed and result.champion_iteration == 1
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "iteration 1 looks collapsed" in warning and "gating is off" in warning
    assert ratio(store, 1) == pytest.approx(0.2)


def test_gate_keeps_its_behaviour_for_a_healthy_model(tmp_path, caplog):
    store = gate_store(tmp_path, seed=(0.2, 20.0, 0.0), new=(0.3, 15.0, 0.05))  # at the limits, not past them
    with caplog.at_level(logging.WARNING, logger="selfimprove"):
        accepted = gate_iteration(store, gate_cfg(True), "r", 1)
    assert accepted.accepted and not accepted.collapsed and "beats" in accepted.reason
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    (tmp_path / "b").mkdir()
    store = gate_store(tmp_path / "b", seed=(0.4, 20.0, 0.0), new=(0.3, 20.0, 0.0))
    rejected = gate_iteration(store, gate_cfg(True), "r", 1)
    assert not rejected.accepted and not rejected.collapsed and "does not beat" in rejected.reason


def test_gate_thresholds_are_configurable(tmp_path):
    store = gate_store(tmp_path, seed=(0.2, 20.0, 0.0), new=(0.3, 6.0, 0.5))
    cfg = config_from_dict({"gate": {"enabled": True, "max_no_answer_rate": 1.0, "min_length_ratio": 0.0}})
    assert gate_iteration(store, cfg, "r", 1).accepted
    assert GateConfig().max_no_answer_rate == 0.05 and GateConfig().min_length_ratio == 0.5


# ---- 1. DPO's NLL term on the chosen response --------------------------------------------------------------
def test_dpo_args_add_the_sft_term_only_when_weighted(tmp_path):
    from trl import DPOConfig

    on = dpo_args(TrainConfig(sft_weight=0.2))
    assert on["loss_type"] == ["sigmoid", "sft"] and on["loss_weights"] == [1.0, 0.2]
    args = DPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], **on)  # TRL accepts the spelling
    assert args.loss_type == ["sigmoid", "sft"] and args.loss_weights == [1.0, 0.2]
    off = DPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], **dpo_args(TrainConfig()))
    assert off.loss_type == ["sigmoid"] and off.loss_weights is None
    assert load_config(None, ["train.sft_weight=0.5"]).train.sft_weight == 0.5
    with pytest.raises(ConfigError, match="train.sft_weight: must be >= 0"):
        load_config(None, ["train.sft_weight=-1"])
    assert Config().pairs.chosen_must_answer is True and Config().train.sft_weight == 0.0


def test_accelerate_child_gets_the_sft_weight(tmp_path, monkeypatch):
    """The child rebuilds the config from the spec's dict: the weight travels with it."""
    import json

    from selfimprove.configs import shipped
    from selfimprove.tasks import train_launch

    seen = {}

    def fake_run(cmd, env, log_path):
        seen["spec"] = json.loads((log_path.parent / "spec.json").read_text())
        return 1, ["not run"]

    monkeypatch.setattr(train_launch, "_run_streaming", fake_run)
    cfg = config_from_dict({"train": {"sft_weight": 0.25, "launcher": "accelerate",
                                      "accelerate_config": str(shipped("accelerate/cpu_single.yaml"))}})
    with pytest.raises(train_launch.TrainingLaunchError):
        train_launch.launch_training("dpo", cfg, tmp_path, tmp_path / "out", [])
    child_cfg = config_from_dict(seen["spec"]["config"])
    assert dpo_args(child_cfg.train)["loss_weights"] == [1.0, 0.25]


def test_dpo_trains_with_the_sft_term(tmp_path, tiny_model_dir):
    from selfimprove.tasks.train import run_dpo
    from tests.conftest import tiny_config_tree
    from tests.test_train import EXAMPLES

    tree = tiny_config_tree(tmp_path, tiny_model_dir)
    tree["train"]["sft_weight"] = 1.0
    stats = run_dpo(config_from_dict(tree), tiny_model_dir, tmp_path / "out", EXAMPLES)
    assert stats["steps"] == 2
    # Step 1: the policy is the reference, so the sigmoid term is exactly ln 2; the NLL of the chosen adds to it.
    assert stats["first_loss"] > 1.0  # (about 7 on the tiny model; exactly 0.6931 without the term)
