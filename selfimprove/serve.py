"""`selfimprove serve CONFIG --cron "..."`: a Prefect deployment of the run flow with a schedule,
served by this process (Prefect's runner executes each scheduled run in a subprocess).

The deployment's parameters hold the resolved config (data_dir made absolute), so every
scheduled run uses the config as it was when served; re-serve to change it. At most one run of
the deployment executes at a time (a global concurrency limit of 1), so a slow run is never
overlapped by the next tick.

Stopping (Ctrl-C or SIGTERM) while a run executes: Prefect 3.8's own handlers wait for the run's
process to finish first (a run of hours). Here the first signal stops polling for new runs, gives
the run a few seconds to stop by itself (a terminal's Ctrl-C reaches it too: Prefect marks it
Crashed), then cancels it the way Prefect's runner does (cancel intent, SIGTERM, SIGKILL after 30 s;
marked Cancelled) and ends whatever processes the run had started. A second signal kills at once.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from selfimprove.config import ConfigError

SELF_STOP_GRACE = 10.0  # seconds a run gets to stop by itself (it got the terminal's Ctrl-C too)
SWEEP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for processes a stopped run left behind


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
    from selfimprove.flows.scheduled import scheduled_run

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
          f"on {api}. Ctrl-C stops serving and a running flow run (the schedule is paused).", flush=True)
    deployment = {"cron": cron, "interval": interval, "concurrency_limit": 1,
                  "parameters": deployment_parameters(cfg, resume_unfinished),
                  "tags": ["selfimprove", cfg.project, cfg.method.name],
                  "description": f"{cfg.iterations} iteration(s) of {cfg.method.name} ({cfg.train.algorithm}) "
                                 f"on {cfg.model.path}; records in {Path(cfg.data_dir).resolve()}"}
    previous_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        asyncio.run(_serve(scheduled_run, name, deployment))
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    print("stopped serving (the schedule is paused).", flush=True)
    return 0


async def _serve(flow, name: str, deployment: dict) -> None:
    """What `flow.serve` does (a Runner with one deployment, paused on shutdown), with our signal handling."""
    from prefect.runner import Runner
    from prefect.settings import PREFECT_UI_URL

    loop = asyncio.get_running_loop()
    stop = _Stop(loop)
    runner = Runner(name=name, pause_on_shutdown=True)
    runner.handle_sigterm = stop.from_signal_handler  # Runner.start installs this as its SIGTERM handler
    loop.add_signal_handler(signal.SIGINT, stop.request, signal.SIGINT)
    try:
        deployment_id = await runner.aadd_flow(flow, name=name, **deployment)
        if PREFECT_UI_URL.value():
            print(f"deployment: {PREFECT_UI_URL.value()}/deployments/deployment/{deployment_id}", flush=True)
        if stop.event.is_set():  # stopped while registering
            return
        start = asyncio.create_task(runner.start())
        stopped = asyncio.create_task(stop.event.wait())
        await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not start.done():
            await stop.stop_runner(runner, start)
        with contextlib.suppress(asyncio.CancelledError):  # cancelled by stop_runner before it had started
            await start
    finally:
        loop.remove_signal_handler(signal.SIGINT)


class _Stop:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.event, self.signals = loop, asyncio.Event(), []

    def from_signal_handler(self, signum, _frame=None) -> None:
        self.loop.call_soon_threadsafe(self.request, signum)

    def request(self, signum: int) -> None:
        self.signals.append(signum)
        if len(self.signals) == 1:
            print(f"\n{signal.Signals(signum).name}: stopping; a running flow run gets {SELF_STOP_GRACE:.0f}s to stop, "
                  "then is cancelled (again to kill it now) ...", flush=True)
            self.event.set()
        else:
            print("killing the running flow run(s) now ...", flush=True)
            _signal_all(_descendants(_run_processes()), signal.SIGKILL)

    async def stop_runner(self, runner, start: asyncio.Task) -> None:
        seen = _descendants(_run_processes())  # pid -> start time: what the runs started, to end it all
        deadline = self.loop.time() + SELF_STOP_GRACE
        while _run_processes() and self.loop.time() < deadline and len(self.signals) == 1:
            seen.update(_descendants(_run_processes()))
            await asyncio.sleep(0.25)
        if not runner.started:  # the signal came before the runner had started
            start.cancel()
            return
        stopping = asyncio.create_task(runner.astop())  # cancels running flow runs, stops polling
        while not stopping.done():
            seen.update(_descendants(_run_processes()))
            await asyncio.wait({stopping}, timeout=0.25)
        await stopping
        if _signal_all(seen, signal.SIGTERM):  # processes the runs left behind (workers, launchers)
            deadline = self.loop.time() + SWEEP_GRACE
            while any(_alive(pid, started) for pid, started in seen.items()) and self.loop.time() < deadline:
                await asyncio.sleep(0.25)
            _signal_all(seen, signal.SIGKILL)


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) from /proc (Linux); None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], int(fields[19])


def _alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == started and stat[1] != "Z"


def _run_processes() -> list[int]:
    """This process's live children that execute flow runs (Prefect starts them with multiprocessing spawn)."""
    me, pids = os.getpid(), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit() and (stat := _stat(int(entry))) and stat[0] == me and stat[1] != "Z":
            try:
                if b"spawn_main" in Path(f"/proc/{entry}/cmdline").read_bytes():
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def _descendants(roots: list[int]) -> dict[int, int]:
    """pid -> start time of the roots and every process below them."""
    table = {int(e): st for e in (os.listdir("/proc") if roots else []) if e.isdigit() and (st := _stat(int(e)))}
    found, frontier = {}, [pid for pid in roots if pid in table]
    while frontier:
        pid = frontier.pop()
        found[pid] = table[pid][2]
        frontier += [child for child, (ppid, _, _) in table.items() if ppid == pid and child not in found]
    return found


def _signal_all(processes: dict[int, int], signum: int) -> bool:
    """Send signum to each still-alive process (same start time: not a reused pid); True if any was alive."""
    hit = False
    for pid, started in processes.items():
        if _alive(pid, started):
            try:
                os.kill(pid, signum)
                hit = True
            except ProcessLookupError:
                pass
    return hit
