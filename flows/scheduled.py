"""The flow a schedule starts: pick the run (a new one, or the newest unfinished run of the same
config when `resume_unfinished`), then run it as a subflow. Served by `selfimprove serve`.
"""
from __future__ import annotations

import logging

from prefect import flow

from selfimprove.config import config_from_dict
from selfimprove.flows.pipeline import selfimprove_run
from selfimprove.tasks.common import new_run_id, store_for

log = logging.getLogger("selfimprove")


def pick_run_id(config: dict, resume_unfinished: bool) -> str:
    cfg = config_from_dict(config)
    if resume_unfinished:
        unfinished = store_for(cfg).latest_unfinished_run(cfg.fingerprint(), cfg.iterations)
        if unfinished:
            log.info("resuming unfinished run %s", unfinished)
            return unfinished
    return new_run_id(cfg.project)


@flow(name="selfimprove-scheduled", log_prints=False)
def scheduled_run(config: dict, resume_unfinished: bool = False) -> str:
    """One scheduled start: returns the run id it ran (see `selfimprove show RUN_ID`)."""
    run_id = pick_run_id(config, resume_unfinished)
    selfimprove_run(config=config, run_id=run_id)
    return run_id
