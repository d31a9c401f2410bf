"""What every stage shares: the stage ledger wrapper, the engine from config, chunked progress."""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from selfimprove.config import Config
from selfimprove.storage.db import Store
from selfimprove.tasks.results import StageResult, from_json

R = TypeVar("R", bound=StageResult)

log = logging.getLogger("selfimprove")


def store_for(cfg: Config, create: bool = True) -> Store:
    """The project's DuckDB file; readers pass create=False (no schema writes, must exist)."""
    return Store(Path(cfg.data_dir) / f"{cfg.project}.duckdb", create=create)


def new_run_id(project: str) -> str:
    return f"{project}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def run_dir(cfg: Config, run_id: str) -> Path:
    return Path(cfg.data_dir) / "runs" / run_id


def run_stage(store: Store, run_id: str, iteration: int, stage: str, fn: Callable[[], R]) -> R:
    """Run `fn` unless the ledger says this stage of this iteration already finished.

    A stage writes its rows with idempotent keys and the ledger row last, so a stage killed
    half-way is simply run again: rows already written are kept, the rest are added. A finished
    stage returns its typed result from the ledger.
    """
    done = store.ledger_entry(run_id, iteration, stage)
    if done is not None:
        log.info("iteration %d %s: already done, skipping", iteration, stage)
        return from_json(done.summary_json)
    started = time.perf_counter()
    result = fn()
    result.seconds = round(time.perf_counter() - started, 2)
    store.mark_stage_done(run_id, iteration, stage, result.seconds, result.to_json())
    log.info("iteration %d %s: done in %.1fs %s", iteration, stage, result.seconds, _short(result.metrics()))
    return result


def content_seed(*parts) -> int:
    """A sampling seed from what is sampled (config seed, iteration, purpose, prompt, sample index),
    never from how much work was left: a resumed stage draws the same seeds as an uninterrupted one."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _short(metrics: dict) -> str:
    return repr({k: round(v, 3) for k, v in metrics.items() if k != "seconds"})[:300]


def chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


_BARS: dict = {}  # (stage, iteration) -> the live terminal progress bar


def progress(stage: str, iteration: int, done: int, total: int, started: float) -> None:
    """A log line per written chunk (Prefect UI, log files); in a terminal, also a progress bar."""
    rate = done / max(time.perf_counter() - started, 1e-9)
    log.info("iteration %d %s: %d/%d (%.1f/s)", iteration, stage, done, total, rate)
    if not sys.stderr.isatty():
        return
    from tqdm import tqdm

    key = (stage, iteration)
    if key not in _BARS:
        _BARS[key] = tqdm(total=total, desc=f"iteration {iteration} {stage}", unit="item", file=sys.stderr,
                          mininterval=0)  # updates come per written chunk, seconds apart
    bar = _BARS[key]
    bar.update(done - bar.n)
    if done >= total:
        _BARS.pop(key).close()


def crash_point(stage: str, iteration: int) -> None:
    """Fault injection for the resume test: SELFIMPROVE_CRASH_AT=stage:iteration kills this
    process with SIGKILL (no cleanup, like an OOM kill) after the stage's first chunk is written."""
    if os.environ.get("SELFIMPROVE_CRASH_AT") == f"{stage}:{iteration}":
        log.warning("SELFIMPROVE_CRASH_AT=%s:%d: killing this process", stage, iteration)
        os.kill(os.getpid(), signal.SIGKILL)


def engine_for(cfg: Config, model_dir: str | Path):
    from selfimprove.models.engines import get_engine

    e = cfg.engine
    return get_engine(e.name, model_dir, dtype=cfg.model.dtype, max_model_len=e.max_model_len, seed=cfg.seed,
                      batch_size=e.batch_size, tensor_parallel_size=e.tensor_parallel_size,
                      pipeline_parallel_size=e.pipeline_parallel_size, data_parallel_size=e.data_parallel_size,
                      gpu_memory_utilization=e.gpu_memory_utilization, device=cfg.model.device,
                      release_for_training=e.release_for_training)
