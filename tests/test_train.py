"""TRL training on the tiny model: DPO full and with LoRA (merged before saving), SFT."""
import logging

import pytest
import torch
from safetensors import safe_open

from selfimprove.config import config_from_dict
from selfimprove.models.loading import load_model
from selfimprove.tasks.train import common_training_args, run_dpo, run_sft
from tests.conftest import tiny_config_tree

EXAMPLES = [{"prompt_text": f"Calculate {a} + 1.", "chosen_text": f"Answer: {a + 1}", "rejected_text": "I am not sure",
             "text": f"Answer: {a + 1}"} for a in range(6)]


def test_dpo_with_lora_merges_and_changes_the_targeted_weights(tmp_path, tiny_model_dir):
    tree = tiny_config_tree(tmp_path, tiny_model_dir)
    tree["train"]["lora"] = {"enabled": True, "r": 4, "alpha": 8}
    stats = run_dpo(config_from_dict(tree), tiny_model_dir, tmp_path / "out", EXAMPLES)
    assert stats["steps"] == 2 and stats["examples"] == 6
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert keys and not any("lora" in k for k in keys)  # a plain model, loadable by vLLM
    seed = dict(load_model(tiny_model_dir).named_parameters())
    trained = dict(load_model(tmp_path / "out").named_parameters())
    changed = {n for n in seed if not torch.equal(seed[n], trained[n])}
    # LoRA targets the linear layers; norms and the (tied) embedding are untouched.
    assert any("q_proj" in n for n in changed) and any("mlp" in n for n in changed)
    assert not any("norm" in n or "embed" in n for n in changed)


def test_sft_trains_on_completions_and_logs_each_step(tmp_path, tiny_model_dir, caplog):
    caplog.set_level(logging.INFO, logger="selfimprove")
    stats = run_sft(config_from_dict(tiny_config_tree(tmp_path, tiny_model_dir)), tiny_model_dir, tmp_path / "sft",
                    EXAMPLES)
    assert stats["steps"] == 2 and stats["params_changed_fraction"] > 0.5 and stats["loss"] > 0
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train step")]
    assert [m.split()[2] for m in steps] == ["1/2", "2/2", "2/2"]  # per step, then the trainer's summary
    assert all("loss=" in m for m in steps[:2])


def test_gradient_checkpointing_trains_the_same_as_without(tmp_path, tiny_model_dir):
    """Recomputing activations changes memory, not the update: same seed, same loss, same weights."""
    results = {}
    for flag in (False, True):
        tree = tiny_config_tree(tmp_path, tiny_model_dir)
        tree["train"]["gradient_checkpointing"] = flag
        assert common_training_args(config_from_dict(tree), tmp_path / "x", None)["gradient_checkpointing"] is flag
        stats = run_sft(config_from_dict(tree), tiny_model_dir, tmp_path / f"gc-{flag}", EXAMPLES)
        results[flag] = (stats["loss"], dict(load_model(tmp_path / f"gc-{flag}").named_parameters()))
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5)
    assert all(torch.allclose(p, results[True][1][n], atol=1e-6) for n, p in results[False][1].items())
