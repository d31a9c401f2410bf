"""Stage 0 of a run: record the run and its config, materialise prompts, resolve the seed model.

Idempotent: a resumed run finds its row, prompts and seed model already there. Resuming with a
different config is refused (only `iterations` may grow), so a run stays reproducible from the
config stored with it.
"""
from __future__ import annotations

import json

from models.loading import model_hash, resolve_model
from selfimprove.config import Config, ConfigError, config_from_dict
from storage.db import Store, now
from tasks.data import build_eval_only, build_splits

RESUMABLE_CHANGES = {"iterations"}


def check_resume_config(stored_json: str, cfg: Config, run_id: str) -> None:
    stored = json.loads(stored_json)
    current = cfg.to_dict()
    differing = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    blocked = [k for k in differing if k not in RESUMABLE_CHANGES]
    if blocked:
        raise ConfigError(f"run {run_id} was started with a different config (differs in: {', '.join(blocked)}); "
                          "resume it with its own config (`selfimprove show` prints it) or start a new run")


def prepare_run(store: Store, cfg: Config, run_id: str) -> dict:
    existing = store.run(run_id)
    if existing is not None:
        check_resume_config(existing["config_json"], cfg, run_id)
    seed_dir = resolve_model(cfg.model.path, cfg.data_dir)
    if existing is None:
        store.append("runs", [{"run_id": run_id, "project": cfg.project, "method": cfg.method.name, "created_at": now(),
                               "config_json": json.dumps(cfg.to_dict()), "config_hash": cfg.fingerprint(),
                               "seed_model": str(seed_dir)}])
    if not store.prompts(run_id, "train"):
        splits = build_splits(cfg.data)
        if cfg.eval_data is not None:
            name = cfg.eval_data.source if cfg.eval_data.source != "reasoning_gym" else cfg.eval_data.task
            splits[name] = build_eval_only(cfg.eval_data, name)
        store.append("prompts", [{"run_id": run_id, **row} for rows in splits.values() for row in rows])
    store.append("iterations", [{"run_id": run_id, "iteration": 0, "model_path": str(seed_dir),
                                 "model_hash": model_hash(seed_dir), "started_at": now()}])
    counts = store.query("SELECT split, count(*) AS n FROM prompts WHERE run_id = ? GROUP BY split", [run_id])
    return {"seed_dir": str(seed_dir), **{f"prompts_{r['split']}": r["n"] for r in counts}}


def stored_config(store: Store, run_id: str) -> Config:
    row = store.run(run_id)
    if row is None:
        raise KeyError(f"no run {run_id!r} in {store.path}")
    return config_from_dict(json.loads(row["config_json"]))
