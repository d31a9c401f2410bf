"""Stage 0 of a run: record the run and its config, materialise prompts, resolve the seed model.

Idempotent: a resumed run finds its row, prompts and seed model already there. Resuming with a
different config is refused (only `iterations` may grow), so a run stays reproducible from the
config stored with it. `data_dir` is not compared: the run was found in that directory's
database, however the path was spelled (`serve` stores it absolute, the demo config relative).
"""
from __future__ import annotations

import json

from selfimprove.config import Config, ConfigError, config_from_dict
from selfimprove.models.loading import model_hash, resolve_model
from selfimprove.storage.db import Store
from selfimprove.storage.records import Iteration, Prompt, Run, now
from selfimprove.tasks.answers import check_scorable
from selfimprove.tasks.data import build_eval_only, build_splits
from selfimprove.tasks.results import PrepareResult

RESUMABLE_CHANGES = {"iterations", "data_dir"}


def check_resume_config(stored_json: str, cfg: Config, run_id: str) -> None:
    stored = json.loads(stored_json)
    try:  # a setting added since the run started reads as its default, which is what the run used
        stored = config_from_dict(stored).to_dict()
    except (ConfigError, TypeError, ValueError):
        pass  # a setting since removed or renamed: compare as stored (and refuse)
    current = cfg.to_dict()
    differing = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    blocked = [k for k in differing if k not in RESUMABLE_CHANGES]
    if blocked:
        raise ConfigError(f"run {run_id} was started with a different config (differs in: {', '.join(blocked)}); "
                          "resume it with its own config (`selfimprove show` prints it) or start a new run")


def prepare_run(store: Store, cfg: Config, run_id: str) -> PrepareResult:
    existing = store.run(run_id)
    if existing is not None:
        check_resume_config(existing.config_json, cfg, run_id)
    seed_dir = resolve_model(cfg.model.path, cfg.data_dir)
    if existing is None:
        store.add([Run(run_id, cfg.project, cfg.method.name, now(), json.dumps(cfg.to_dict()), cfg.fingerprint(),
                       str(seed_dir))])
    if not store.prompts(run_id, "train"):
        # Labelled splits beside train and held-out: the judge bootstrap's data and the judge probe.
        seed_size = cfg.bootstrap.judge_prompts + cfg.bootstrap.generation_prompts if cfg.bootstrap.enabled else 0
        splits = build_splits(cfg.data, {"seed": seed_size, "probe": cfg.judge.probe_size})
        if cfg.eval_data is not None:
            name = cfg.eval_data.source if cfg.eval_data.source != "reasoning_gym" else cfg.eval_data.task
            splits[name] = build_eval_only(cfg.eval_data, name)
        for rows in splits.values():  # refuse a task whose answers the project cannot score, before any work
            if rows:
                check_scorable(rows[0]["source"], rows)
        store.add([Prompt(run_id=run_id, **row) for rows in splits.values() for row in rows])
    store.add([Iteration(run_id, 0, str(seed_dir), model_hash(seed_dir))])
    return PrepareResult(seed_dir=str(seed_dir), prompts=store.prompt_counts(run_id))
