"""Process-wide defaults applied before the heavy imports: offline hubs, no telemetry, quiet and
in-process vLLM, a Prefect ephemeral server given time to start. A variable the user already set
always wins (e.g. HF_HUB_OFFLINE=0 to download a hub model).

Also silences, by exact message, a few warnings that every run printed and that tell the user nothing
(SELFIMPROVE_SHOW_ALL_WARNINGS=1 keeps them): MLflow's "model card could not be retrieved from the
hub" and "Unable to find license information" for every logged local model, a torch deprecation that
vLLM's import triggers (`torch.distributed.reduce_op`), and vLLM's "Triton ... doesn't include CPU
backend" on CPU machines. Every other warning from these libraries still shows."""
import logging
import os
import re
import warnings

DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "selfimprove",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_LOGGING_LEVEL": "ERROR",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
}


# logger name -> messages (regexes, matched at the start of the formatted message) that say nothing to a user
QUIET_LOGS = {
    "mlflow.transformers": [r"The model card could not be retrieved from the hub",
                            r"Unable to find license information for this model"],
    "vllm.triton_utils.importing": [r"Triton is installed, but doesn't include CPU backend"],
}
# (category, message regex) for warnings.filterwarnings
QUIET_WARNINGS = [(FutureWarning, r"`torch\.distributed\.reduce_op` is deprecated")]


class DropMessages(logging.Filter):
    """Drops records whose message starts with one of the given regexes; lets everything else through."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to drop
            return True
        return self.pattern.match(message) is None


def quiet_known_noise() -> None:
    """Install the filters above (idempotent). Logger filters apply to records logged on that logger."""
    if os.environ.get("SELFIMPROVE_SHOW_ALL_WARNINGS", "") not in ("", "0"):
        return
    for name, patterns in QUIET_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) for f in logger.filters):
            logger.addFilter(DropMessages(patterns))
    for category, message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def apply_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    quiet_known_noise()
