"""DPO/SFT training through `accelerate launch`: the parent side (launch_training) and the child (main).

Used when train.launcher is "accelerate". The parent writes the examples (JSONL) and a job spec
into `<out_dir>.launch/`, runs

    python -m accelerate.commands.launch --config_file CFG --num_processes N -m selfimprove.tasks.train_launch SPEC

with the child's output streamed to the log, and reads back the stats the child's main process
wrote. The child trains with the same code as the in-process path (tasks.train.IN_PROCESS); only
its main process saves the model and the stats. On success the job directory is removed; on
failure it is kept (spec, examples, output.log) and named in the error.

GRPO is not launched this way: its reward function appends to DuckDB from inside the trainer and
DuckDB allows one writing process per file, so GRPO trains in-process (the config refuses
grpo + accelerate).
"""
from __future__ import annotations

import collections
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from selfimprove.tasks.common import log

# The columns each algorithm reads (tasks.train); anything else in a row stays in DuckDB.
FIELDS = {"dpo": ("prompt_text", "chosen_text", "rejected_text"), "sft": ("prompt_text", "text")}
TAIL_LINES = 30


class TrainingLaunchError(RuntimeError):
    """The accelerate-launched training child failed; the message carries its last output lines."""


def accelerate_config_file(train_cfg) -> Path:
    """train.accelerate_config, or the shipped default for this machine (CPU: one process; GPU: DDP)."""
    if train_cfg.accelerate_config:
        path = Path(train_cfg.accelerate_config)
        if not path.is_file():
            raise TrainingLaunchError(f"train.accelerate_config: file not found: {path}")
        return path.resolve()
    import torch

    from selfimprove.configs import shipped

    return Path(str(shipped("accelerate/" + ("ddp.yaml" if torch.cuda.is_available() else "cpu_single.yaml"))))


def launch_training(algorithm: str, cfg, base_dir, out_dir, examples: list[dict], epochs: float | None = None) -> dict:
    """Train `algorithm` from base_dir into out_dir in an `accelerate launch` child; return its stats."""
    out_dir = Path(out_dir).resolve()
    job = out_dir.with_name(out_dir.name + ".launch")
    shutil.rmtree(job, ignore_errors=True)
    job.mkdir(parents=True)
    with open(job / "examples.jsonl", "w") as fh:
        for e in examples:
            fh.write(json.dumps({k: e[k] for k in FIELDS[algorithm]}) + "\n")
    spec = {"algorithm": algorithm, "config": cfg.to_dict(), "base_dir": str(Path(base_dir).resolve()),
            "out_dir": str(out_dir), "epochs": epochs, "examples": str(job / "examples.jsonl"),
            "stats": str(job / "stats.json")}
    (job / "spec.json").write_text(json.dumps(spec, indent=1))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config_file(cfg.train)),
           "--num_processes", str(cfg.train.num_processes), "-m", "selfimprove.tasks.train_launch",
           str(job / "spec.json")]
    # Progress bars off: their carriage-return redraws would flood the log (the loss lines still come through).
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": os.environ.get("TQDM_DISABLE", "1")}
    log.info("%s training through accelerate launch: %s", algorithm, shlex.join(cmd))
    started = time.perf_counter()
    returncode, tail = _run_streaming(cmd, env, job / "output.log")
    stats_path = job / "stats.json"
    if returncode != 0 or not stats_path.is_file():
        why = f"exited with code {returncode}" if returncode != 0 else "exited 0 but wrote no stats.json"
        raise TrainingLaunchError(f"accelerate-launched {algorithm} training {why} (job files kept in {job}); "
                                  f"last output:\n" + "\n".join(tail))
    stats = json.loads(stats_path.read_text())
    stats["launch_seconds"] = time.perf_counter() - started  # training + process start-up and imports
    shutil.rmtree(job, ignore_errors=True)
    return stats


def _run_streaming(cmd: list[str], env: dict, log_path: Path) -> tuple[int, list[str]]:
    """Run cmd with stdout+stderr copied line by line to the log and to log_path; keep the tail."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    with open(log_path, "w") as out, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      env=env, text=True, errors="replace") as proc:
        for line in proc.stdout:
            out.write(line)
            line = line.rstrip()
            if line:
                tail.append(line)
                log.info("[train child] %s", line)
    return proc.returncode, list(tail)


def main(argv: list[str] | None = None) -> int:
    """Child entry: rebuild config and examples from the spec, train, main process writes the stats."""
    from selfimprove.env import apply_defaults

    apply_defaults()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (spec_path,) = argv if argv is not None else sys.argv[1:]
    spec = json.loads(Path(spec_path).read_text())
    base_dir = Path(spec["base_dir"])
    # Checked here, before the heavy imports, so the parent's error tail says what is wrong.
    if not (base_dir / "config.json").is_file():
        raise SystemExit(f"train_launch: base model directory {base_dir} does not exist or has no config.json")
    from selfimprove.config import config_from_dict
    from selfimprove.tasks.train import IN_PROCESS

    cfg = config_from_dict(spec["config"])
    with open(spec["examples"]) as fh:
        examples = [json.loads(line) for line in fh if line.strip()]
    stats = IN_PROCESS[spec["algorithm"]](cfg, base_dir, spec["out_dir"], examples, spec["epochs"])
    if stats is not None:  # main process only: it alone saved the model
        staging = Path(spec["stats"] + ".partial")
        staging.write_text(json.dumps(stats))
        staging.rename(spec["stats"])  # the parent never reads half a file
    return 0


if __name__ == "__main__":
    sys.exit(main())
