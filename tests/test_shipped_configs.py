"""Every config shipped in configs/ loads and validates (no model or data needed to validate)."""
from pathlib import Path

import pytest

from selfimprove.config import Config, load_config

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def test_configs_are_shipped():
    assert {p.name for p in CONFIGS} >= {"demo.yaml", "tiny_smoke.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path):
    config = load_config(path)
    assert isinstance(config, Config)
    config.validate()  # idempotent: what loaded is still valid when checked again
    assert load_config(None, base=config.to_dict()) == config


# --- configs/gpu: real models on one GPU, GSM8K train from a directory the user prepares ---------------------------

GPU_CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs" / "gpu").glob("*.yaml"))
GSM8K_TRAIN_ROWS = 7473  # openai/gsm8k main/train


@pytest.fixture(scope="module")
def gsm8k_shaped_train(tmp_path_factory) -> Path:
    """A stand-in for data/gsm8k-train, which the configs read and this machine cannot download: a
    `save_to_disk` dataset with GSM8K train's fields and answer format (a worked solution ending "#### N")
    and as many rows, so field names, answer grading and split sizes are checked for real."""
    import datasets

    rows = []
    for i in range(GSM8K_TRAIN_ROWS):
        more, total = i % 9 + 2, i + i % 9 + 2
        rows.append({"question": f"Ann has {i} apples and buys {more} more. How many apples does she have now?",
                     "answer": f"She has {i} + {more} = <<{i}+{more}={total}>>{total} apples.\n#### {total:,}"})
    path = tmp_path_factory.mktemp("gsm8k") / "gsm8k-train"
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


def _documented_overrides(path: Path) -> list[str]:
    """The `--set ...` lines of a config's header comment (the MATH-500 swap), as the shell would pass them."""
    import shlex

    words = [w for line in path.read_text().splitlines() if line.startswith("#   --set")
             for w in shlex.split(line[1:])]
    return [w for w in words if w != "--set"]


def test_gpu_configs_cover_both_sizes_and_four_methods():
    names = {p.stem for p in GPU_CONFIGS}
    assert names == {f"{size}_{method}" for size in ("qwen1.5b", "qwen7b")
                     for method in ("self_rewarding", "temporal", "bstar", "grpo_majority")}


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=lambda p: p.name)
def test_gpu_config_refuses_to_start_without_the_prepared_train_set(path, tmp_path, monkeypatch):
    from selfimprove.config import ConfigError

    monkeypatch.chdir(tmp_path)  # data.path is relative: nothing prepared here
    with pytest.raises(ConfigError, match=r"data\.path: file not found: data/gsm8k-train"):
        load_config(path)


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=lambda p: p.name)
def test_gpu_config_validates_and_its_data_grades(path, gsm8k_shaped_train):
    # Only data.path is overridden (the file's own, data/gsm8k-train, does not exist on this machine).
    from selfimprove.tasks.answers import check_scorable, grade
    from selfimprove.tasks.data import build_eval_only, build_splits

    config = load_config(path, [f"data.path={gsm8k_shaped_train}"])
    assert load_config(None, base=config.to_dict()) == config
    size, method = path.stem.split("_", 1)
    algorithm = {"self_rewarding": "dpo", "temporal": "dpo", "bstar": "sft", "grpo_majority": "grpo"}[method]
    assert config.train.algorithm == algorithm
    assert config.method.name == method.replace("grpo_majority", "self_rewarding")
    assert (config.engine.name, config.model.device, config.model.dtype, config.train.precision) == \
        ("vllm", "auto", "bfloat16", "bf16")
    assert config.train.lora.enabled is config.train.gradient_checkpointing is (size == "qwen7b")
    assert config.model.path == {"qwen1.5b": "Qwen/Qwen2.5-1.5B-Instruct", "qwen7b": "Qwen/Qwen2.5-7B-Instruct"}[size]
    assert config.eval_data is not None and config.eval_data.source == "gsm8k"

    # The splits prepare_run draws (tasks/prepare.py) fit in GSM8K train and every one grades its own answers.
    seed = config.bootstrap.judge_prompts + config.bootstrap.generation_prompts if config.bootstrap.enabled else 0
    splits = build_splits(config.data, {"seed": seed, "probe": config.judge.probe_size})
    assert sum(len(rows) for rows in splits.values()) <= GSM8K_TRAIN_ROWS
    assert len(splits["train"]) == config.data.train_size and len(splits["heldout"]) == config.data.eval_size
    splits["gsm8k"] = build_eval_only(config.eval_data, "gsm8k")
    for rows in splits.values():
        check_scorable(rows[0]["source"], rows)
    item = splits["train"][0]
    assert "Answer: <number>" in item["prompt_text"] and item["question"] in item["prompt_text"]
    truth = item["answer"].split("####")[-1].strip()
    assert grade(f"Step by step ...\nAnswer: {truth}", item["answer"], item["source"])[1] is True
    assert grade("Step by step ...\nAnswer: 0", item["answer"], item["source"])[1] is False


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=lambda p: p.name)
def test_gpu_config_math500_swap_in_its_header_works(path, gsm8k_shaped_train):
    from selfimprove.tasks.answers import check_scorable
    from selfimprove.tasks.data import build_eval_only

    overrides = _documented_overrides(path)
    assert any(o.startswith("eval_data.source=") for o in overrides)
    config = load_config(path, [f"data.path={gsm8k_shaped_train}", *overrides])
    assert config.eval_data.source == "math500" and config.eval.max_tokens == 1024
    template = config.eval_data.prompt_template
    assert template.startswith("{question}\n") and template.endswith("within \\boxed{}.")
    rows = build_eval_only(config.eval_data, "math500")
    assert len(rows) == 500
    check_scorable("math500", rows)
