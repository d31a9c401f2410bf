"""DPO and SFT train steps on CUDA in bf16 autocast on the tiny model (marked gpu, skipped without CUDA):
the trainer picks the GPU by itself (tasks/train.py: use_cpu only when torch sees no CUDA device)."""
import pytest
import torch

from selfimprove.config import config_from_dict
from selfimprove.models.loading import load_model
from selfimprove.tasks.train import common_training_args, run_dpo, run_sft
from tests.conftest import tiny_config_tree

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")]

EXAMPLES = [{"prompt_text": f"Calculate {a} + 1.", "chosen_text": f"Answer: {a + 1}", "rejected_text": "I am not sure",
             "text": f"Answer: {a + 1}"} for a in range(8)]


@pytest.mark.parametrize("algorithm", ["dpo", "sft"])
def test_train_steps_on_cuda_in_bf16(tmp_path, tiny_model_dir, algorithm):
    tree = tiny_config_tree(tmp_path, tiny_model_dir)
    tree["train"].update(precision="bf16", learning_rate=1e-3)
    cfg = config_from_dict(tree)
    args = common_training_args(cfg, tmp_path / "x", None)
    assert args["use_cpu"] is False and args["bf16"] is True
    stats = (run_dpo if algorithm == "dpo" else run_sft)(cfg, tiny_model_dir, tmp_path / "out", EXAMPLES)
    assert stats["steps"] >= 1 and stats["loss"] == stats["loss"]  # a finite loss, not NaN
    seed = dict(load_model(tiny_model_dir).named_parameters())
    trained = dict(load_model(tmp_path / "out").named_parameters())
    assert trained[next(iter(seed))].dtype == torch.float32  # saved in float32: bf16 is autocast only
    assert any(not torch.equal(seed[n], trained[n]) for n in seed)
