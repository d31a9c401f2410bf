"""Resume reproduces records: what a stage draws depends on what is drawn (seed, iteration,
purpose, prompt, sample index), not on how much work was left when it restarted.

Defects these tests caught: chunk seeds counted from the chunks still to do (a resumed stage drew
different samples than an uninterrupted one); GRPO rows named by a per-process call counter (a
retrained stage kept the crashed attempt's rows and dropped the ones that trained the model).
"""
import pytest

from selfimprove.config import config_from_dict
from selfimprove.models.engines import SamplingSpec, close_engine, vllm_available
from selfimprove.storage.records import Generation, Reward
from selfimprove.tasks.common import store_for
from selfimprove.tasks.generate import generate_samples
from selfimprove.tasks.prepare import prepare_run
from selfimprove.tasks.train import train_next_model
from tests.conftest import tiny_config_tree

ENGINES = ["transformers"] + (["vllm"] if vllm_available() else [])


@pytest.mark.parametrize("engine", ENGINES)
def test_a_resumed_generation_stage_draws_what_an_uninterrupted_one_draws(tmp_path, tiny_model_dir, engine):
    texts = {}
    for attempt in ("whole", "resumed"):
        tree = tiny_config_tree(tmp_path / attempt, tiny_model_dir)
        tree["engine"].update(name=engine, write_every=2)
        cfg = config_from_dict(tree)
        store = store_for(cfg)
        prepare_run(store, cfg, "r")
        prompts = store.prompts("r", "train")
        spec = SamplingSpec(n=3, temperature=1.0, top_p=1.0, max_tokens=8, seed=cfg.seed)
        if attempt == "resumed":  # a crash after the first chunk: the last 3 prompts were done first
            generate_samples(store, cfg, "r", 1, tiny_model_dir, prompts[3:], spec, "train")
        generate_samples(store, cfg, "r", 1, tiny_model_dir, prompts, spec, "train")
        texts[attempt] = {g.generation_id: g.token_ids for g in store.generations("r", 1, "train")}
        close_engine()
    assert len(texts["whole"]) == 18
    assert texts["resumed"] == texts["whole"]
    # Samples of one prompt differ from each other (distinct seeds per sample index).
    assert len({tuple(texts["whole"][f"r:1:train:train-00000:{j}"]) for j in range(3)}) > 1


def test_a_retrained_grpo_stage_keeps_only_the_rows_of_the_model_it_made(tmp_path, tiny_model_dir):
    tree = tiny_config_tree(tmp_path / "data", tiny_model_dir)
    tree["train"].update(algorithm="grpo", batch_size=6)
    tree["reward"] = {"signals": [{"name": "majority_vote", "weight": 1.0}]}
    cfg = config_from_dict(tree)
    store = store_for(cfg)
    prepare_run(store, cfg, "g")
    # What a crashed attempt left: completions and rewards that trained no saved model.
    stale = Generation("g:1:grpo:train-00000:s0-0", "g", 1, "grpo", "train-00000", 0, "policy", None, "trl", 1.0,
                       "stale", [1], None, None, 1, "1", False)
    store.add([stale])
    store.add([Reward("g", 1, stale.generation_id, "reward", 0.0)])
    result = train_next_model(store, cfg, "g", 1, tiny_model_dir, tmp_path / "out")
    rows = store.generations("g", 1, "grpo")
    assert result.discarded_rows == 1 and result.steps >= 1
    assert "stale" not in {r.text for r in rows}
    # Each completion the trainer scored is there once, named by step and position.
    steps = {r.generation_id.rsplit(":s", 1)[1].split("-")[0] for r in rows}
    assert len(rows) == result.steps * 6 and len(steps) == result.steps
    rewards = store.query("SELECT count(*) AS n FROM rewards WHERE signal = 'reward'")[0]["n"]
    assert rewards == len(rows)
