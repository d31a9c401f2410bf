"""`selfimprove serve CONFIG --cron "..."`: a Prefect deployment of the run flow with a schedule,
served by this process (Prefect's runner executes each scheduled run in a subprocess).

The deployment's parameters hold the resolved config (data_dir made absolute), so every
scheduled run uses the config as it was when served; re-serve to change it. At most one run of
the deployment executes at a time (a global concurrency limit of 1), so a slow run is never
overlapped by the next tick.
"""
from __future__ import annotations

from pathlib import Path

from selfimprove.config import ConfigError


def prefect_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def deployment_parameters(cfg, resume_unfinished: bool) -> dict:
    config = cfg.to_dict()
    config["data_dir"] = str(Path(cfg.data_dir).resolve())  # scheduled runs write where `serve` was told
    return {"config": config, "resume_unfinished": resume_unfinished}


def check_cron(cron: str) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError as exc:
        raise ConfigError(f"--cron {cron!r} is not a valid cron expression: {exc}") from None


def serve(cfg, cron: str | None, interval: float | None, name: str | None, resume_unfinished: bool) -> int:
    from flows.scheduled import scheduled_run

    api = prefect_api_url()
    if not api:
        raise ConfigError("selfimprove serve needs a Prefect server to hold the schedule: start one with "
                          "`selfimprove ui` and export PREFECT_API_URL=http://127.0.0.1:4200/api")
    if (cron is None) == (interval is None):
        raise ConfigError("give exactly one of --cron \"MIN HOUR DOM MON DOW\" or --interval SECONDS")
    if cron is not None:
        check_cron(cron)
    name = name or f"{cfg.project}-{cfg.method.name}"
    when = f"cron '{cron}'" if cron else f"every {interval:g}s"
    print(f"serving deployment 'selfimprove-scheduled/{name}' ({when}, resume_unfinished={resume_unfinished}) "
          f"on {api}. Ctrl-C stops serving (the schedule is paused).", flush=True)
    scheduled_run.serve(name=name, cron=cron, interval=interval, global_limit=1,
                        parameters=deployment_parameters(cfg, resume_unfinished),
                        tags=["selfimprove", cfg.project, cfg.method.name],
                        description=f"{cfg.iterations} iteration(s) of {cfg.method.name} ({cfg.train.algorithm}) "
                                    f"on {cfg.model.path}; records in {Path(cfg.data_dir).resolve()}")
    return 0
