"""Method strategies: selection logic on hand-built cases, then every method x algorithm that makes
sense for one real iteration on the tiny model (Prefect + DuckDB + MLflow + TRL + vLLM)."""
import pytest

from selfimprove.config import ConfigError, config_from_dict, load_config
from selfimprove.methods.temporal import anchored_pair, future_guided
from selfimprove.models.engines import vllm_available
from selfimprove.storage.records import Candidate
from selfimprove.tasks.build import Ranked
from selfimprove.tasks.common import store_for
from selfimprove.tasks.results import from_json
from selfimprove.tasks.score import combined, group_signals
from tests.conftest import tiny_config_tree


def c(gid, idx, score, text=None):
    return Ranked(gid, idx, text if text is not None else f"text {gid}", score)


def test_temporal_rejects_the_past_models_worst():
    current, past = [c("c0", 0, 3.0), c("c1", 1, 2.0)], [c("p0", 0, 2.5), c("p1", 1, 0.5)]
    chosen, rejected, source = anchored_pair(current, past, 0.1)
    assert (chosen.generation_id, rejected.generation_id, source) == ("c0", "p1", "past")


def test_temporal_falls_back_to_current_worst_when_past_is_not_lower():
    # M_0's worst (3.0) is not below M_i's best (3.0): use M_i's own worst.
    current, past = [c("c0", 0, 3.0), c("c1", 1, 1.0)], [c("p0", 0, 3.0), c("p1", 1, 4.0)]
    chosen, rejected, source = anchored_pair(current, past, 0.1)
    assert (chosen.generation_id, rejected.generation_id, source) == ("c0", "c1", "current")
    # No scored past candidates at all: the same fallback.
    assert anchored_pair([c("c0", 0, 3.0), c("c1", 1, 1.0)], [c("p0", 0, None)], 0.1)[2] == "current"
    # ... and when the fallback cannot make a pair either, its reason comes back.
    assert anchored_pair([c("c0", 0, 2.0), c("c1", 1, 2.0)], [c("p0", 0, 5.0)], 0.1) == "all_tied"


def test_temporal_margin_and_identical_text_apply_to_the_anchored_pair():
    assert anchored_pair([c("c0", 0, 3.0), c("c1", 1, 2.99)], [c("p0", 0, 2.95)], 0.5) == "margin_below_min"
    assert anchored_pair([c("c0", 0, 3.0, "7")], [c("p0", 0, 1.0, "7 ")], 0.1) == "identical_text"


def test_future_model_replaces_chosen_only_when_strictly_better():
    chosen = c("c", 0, 3.0)
    assert future_guided(chosen, [c("f0", 0, 3.0), c("f1", 1, 1.0)]) == (chosen, False)
    assert future_guided(chosen, [c("f0", 0, None)]) == (chosen, False)
    best, replaced = future_guided(chosen, [c("f0", 0, 3.5), c("f1", 1, 4.0)])
    assert (best.generation_id, replaced) == ("f1", True)


def test_group_signals_and_weighted_combination():
    def cand(gid, answer, correct, judge):
        return Candidate(gid, "p", "train", 0, answer, [1], answer, correct, "q", "q", judge_score=judge)
    group = [cand("a", "4", True, 4.0), cand("b", "4", True, None), cand("c", "5", False, 1.0)]
    values = group_signals({"judge", "verifiable", "majority_vote"}, group, {})
    assert values["verifiable"] == [1.0, 1.0, 0.0] and values["majority_vote"] == [1.0, 1.0, 0.0]
    # 1.0 * judge + 0.5 * majority; an unparsed judge leaves the candidate without a reward.
    assert combined(values, {"judge": 1.0, "majority_vote": 0.5}) == [4.5, None, 1.0]
    assert combined(values, {"verifiable": 2.0}) == [2.0, 2.0, 0.0]


def test_method_config_validation():
    assert load_config(None, ["method=temporal"]).method.name == "temporal"
    both = load_config(None, ["method=bstar", "method.temperatures=[0.5, 1.0]", "train.algorithm=sft"]).method
    assert (both.name, both.temperatures) == ("bstar", [0.5, 1.0])
    with pytest.raises(ConfigError, match="temporal builds preference pairs"):
        load_config(None, ["method=temporal", "train.algorithm=sft"])
    with pytest.raises(ConfigError, match="bstar selects samples offline"):
        load_config(None, ["method.name=bstar", "train.algorithm=grpo"])
    with pytest.raises(ConfigError, match="judge.mode: pairwise scores are relative"):
        load_config(None, ["method=temporal", "judge.mode=pairwise"])
    with pytest.raises(ConfigError, match="judge.mode: pairwise scores are relative"):
        load_config(None, ["train.algorithm=grpo", "judge.mode=pairwise"])
    with pytest.raises(ConfigError, match=r"method\.name: 'star' is not one of"):
        load_config(None, ["method=star"])


COMBINATIONS = [
    ("self_rewarding", "sft", {}),
    ("self_rewarding", "grpo", {"reward": {"signals": [{"name": "majority_vote", "weight": 1.0},
                                                       {"name": "self_certainty", "weight": 0.5},
                                                       {"name": "judge", "weight": 0.2}]}}),
    ("temporal", "dpo", {"method": {"name": "temporal", "lookahead_epochs": 1.0}}),
    ("bstar", "sft", {"method": {"name": "bstar", "temperatures": [0.5, 1.0], "thresholds": [1.0, 2.0],
                                 "probe_prompts": 4, "probe_samples": 3, "n_star": 2},
                      "reward": {"signals": [{"name": "judge", "weight": 1.0}, {"name": "entropy", "weight": 0.1}]}}),
    ("bstar", "dpo", {"method": {"name": "bstar", "temperatures": [1.0], "probe_prompts": 3, "probe_samples": 3}}),
    ("self_rewarding", "dpo", {"judge": {"mode": "pairwise"}}),
]


@pytest.mark.skipif(not vllm_available(), reason="runs the real loop with vLLM")
@pytest.mark.parametrize("method, algorithm, extra", COMBINATIONS, ids=[f"{m}-{a}" for m, a, _ in COMBINATIONS])
def test_one_iteration_of_each_method(method, algorithm, extra, tmp_path, tiny_model_dir, prefect_harness):
    from selfimprove.flows.pipeline import selfimprove_run

    tree = tiny_config_tree(tmp_path / "data", tiny_model_dir, iterations=1, **extra)
    tree.setdefault("method", {"name": method})
    tree["train"]["algorithm"] = algorithm
    cfg = config_from_dict(tree)
    selfimprove_run(config=cfg.to_dict(), run_id="m")
    store = store_for(cfg)

    def n(sql, params=()):
        return store.query(f"SELECT count(*) AS n FROM ({sql})", list(params))[0]["n"]

    trained = store.query("SELECT * FROM train_runs WHERE iteration = 1", [])[0]
    assert trained["algorithm"] == algorithm
    # A model is trained exactly when there is something to train on (else it is carried over).
    learned = trained["num_examples"] > 0 or algorithm == "grpo"
    assert (trained["steps"] >= 1) == learned and trained["params_changed_fraction"] == (1.0 if learned else 0.0)
    assert n("SELECT * FROM evaluations WHERE iteration = 1 AND metric = 'accuracy_greedy'") == 1
    signals = {s["name"] for s in tree.get("reward", {}).get("signals", [{"name": "judge"}])}
    if algorithm == "grpo":
        groups = n("SELECT * FROM generations WHERE purpose = 'grpo'")
        assert groups >= 3 and groups % 3 == 0  # whole groups of generate.n = 3
        for signal in signals | {"reward"}:
            assert n("SELECT * FROM rewards WHERE signal = ?", [signal]) == groups
        return
    if algorithm == "sft":
        assert trained["num_examples"] == n("SELECT * FROM sft_examples")
    else:
        assert trained["num_examples"] == n("SELECT * FROM pairs")
    if method != "bstar":
        assert trained["num_examples"] >= 1
    if tree["judge"]["mode"] == "pairwise":
        # One tournament judgment per candidate; each comparison splits one win between two
        # candidates, so every prompt's scores average exactly 2.5.
        candidates = n("SELECT * FROM generations WHERE purpose = 'train'")
        assert n("SELECT * FROM judgments WHERE mode = 'pairwise'") == candidates
        means = store.query("SELECT g.prompt_id, avg(j.score) AS mean FROM judgments j JOIN generations g "
                            "USING (generation_id) GROUP BY g.prompt_id", [])
        assert len(means) == 6 and all(abs(r["mean"] - 2.5) < 1e-6 for r in means)
    if method == "temporal":
        assert n("SELECT * FROM generations WHERE purpose = 'train_past'") == 18
        sources = {r["rejected_source"] for r in store.query("SELECT rejected_source FROM pairs", [])}
        assert sources <= {"past", "current"} and sources
        assert n("SELECT * FROM generations WHERE purpose = 'train_future'") == 3 * n("SELECT * FROM pairs")
        # Past samples come from M_0: the seed's hash, like the current model's in iteration 1.
        build = from_json(store.ledger_entry("m", 1, "build").summary_json)
        assert build.lookahead_model_hash and build.pairs == n("SELECT * FROM pairs")
        assert build.rejected_from_past == n("SELECT * FROM pairs WHERE rejected_source = 'past'")
    if method == "bstar":
        mc = tree["method"]
        grid = store.query("SELECT * FROM bstar_grid", [])
        assert len(grid) >= len(mc["temperatures"]) and sum(r["chosen"] for r in grid) == 1
        probe = from_json(store.ledger_entry("m", 1, "probe").summary_json)
        chosen = next(r for r in grid if r["chosen"])
        assert (probe.temperature, probe.threshold) == (chosen["temperature"], chosen["threshold"])
        assert chosen["balance"] == max(r["balance"] for r in grid)
        probe_rewards = [r["value"] for r in store.query(
            "SELECT r.value FROM rewards r JOIN generations g USING (generation_id) WHERE g.purpose = ? "
            "AND r.signal = 'reward'", [f"probe_t{probe.temperature:g}"])]
        assert probe.kept_share == pytest.approx(sum(v >= probe.threshold for v in probe_rewards) / len(probe_rewards))
        train_temps = {r.temperature for r in store.generations("m", 1, "train")}
        assert train_temps == {probe.temperature}
        # Kept = one per distinct (prompt, text) among this iteration's samples at/above the threshold.
        above = n("SELECT DISTINCT g.prompt_id, trim(g.text) FROM generations g JOIN rewards r USING (generation_id) "
                  "WHERE g.purpose = 'train' AND r.signal = 'reward' AND r.value >= ?", [probe.threshold])
        kept = n("SELECT * FROM sft_examples") if algorithm == "sft" else None
        assert kept is None or kept == above
    for signal in signals | {"reward"}:
        assert n("SELECT * FROM rewards r JOIN generations g USING (generation_id) "
                 "WHERE g.purpose = 'train' AND r.signal = ?", [signal]) == 18
