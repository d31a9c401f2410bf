"""A temporary Prefect API server owned by the CLI, for runs made without PREFECT_API_URL.

Left to itself, Prefect starts an "ephemeral" server (a uvicorn subprocess) on the first API call
and stops it at interpreter exit, but a SIGKILLed or OOM-killed CLI never reaches exit: the
server lived on, one orphan per crash. Here the CLI starts the same server itself (Prefect's own
command line, Prefect's settings, so the same $PREFECT_HOME database: its runs still show in
`selfimprove ui`), as a child the kernel SIGTERMs when the CLI dies (Linux PR_SET_PDEATHSIG), on
127.0.0.1 and a free port; waits for /api/health (at most PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS);
points this process and its children at it; stops it on the way out. The server process starts
no children of its own (uvicorn without --workers/--reload) and runs in its own session, so a
terminal's Ctrl-C interrupts only the run, which can then still record its state there.

PR_SET_PDEATHSIG fires when the *thread* that started the child ends, so start it from the main
thread (the CLI does), not from a worker thread that may finish before the run does.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

log = logging.getLogger("selfimprove")
PR_SET_PDEATHSIG = 1
PORT_IN_USE_EXIT = 3  # uvicorn's exit code when the port was taken between our probe and its bind


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def die_with_parent():
    """A Popen preexec_fn: the kernel sends the child SIGTERM when this process (thread) dies. Linux only."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
    return preexec


def server_command(port: int) -> list[str]:
    """What prefect.server.api.server.SubprocessASGIServer runs (Prefect 3.8), on our port."""
    import prefect

    return [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "error", "--lifespan", "on"]


def server_env() -> dict[str, str]:
    from prefect.settings import get_current_settings

    return {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
            **get_current_settings().to_environment_variables(exclude_unset=True)}


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PrefectServerError(RuntimeError):
    """The temporary server did not come up."""


def start_server(timeout: float | None = None) -> tuple[subprocess.Popen, str]:
    """Start the server, wait until healthy; returns (process, API URL). Raises PrefectServerError."""
    from prefect.settings import get_current_settings

    timeout = timeout or float(get_current_settings().server.ephemeral.startup_timeout_seconds)
    env = server_env()
    for _attempt in range(3):
        port = free_port()
        # Its own session: a terminal's Ctrl-C interrupts the run, which can then still record its
        # Crashed state on this server before we stop it.
        proc = subprocess.Popen(server_command(port), env=env, preexec_fn=die_with_parent(), stdin=subprocess.DEVNULL,
                                start_new_session=True)
        api = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if healthy(api + "/health"):
                    return proc, api
                time.sleep(0.2)
        except BaseException:  # Ctrl-C while waiting
            stop(proc)
            raise
        if proc.returncode == PORT_IN_USE_EXIT:
            continue
        stop(proc)
        why = f"exited with code {proc.returncode}" if proc.returncode else f"not healthy after {timeout:.0f}s"
        raise PrefectServerError(f"the temporary Prefect server on 127.0.0.1:{port} {why} (raise "
                                 "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or run `selfimprove ui` and "
                                 "export the PREFECT_API_URL it prints)")
    raise PrefectServerError("the temporary Prefect server found no free port on 127.0.0.1")


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for this process's Prefect settings and its children; restore them after."""
    from prefect.context import refresh_global_settings_context

    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    refresh_global_settings_context()  # Prefect read the environment at import; read it again
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        refresh_global_settings_context()


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the Prefect API URL to run flows against: PREFECT_API_URL (or the profile's) when set,
    else a temporary server owned by this process for the duration of the block."""
    from prefect.settings import get_current_settings

    configured = get_current_settings().api.url
    if configured:
        yield str(configured)
        return
    started = time.monotonic()
    proc, api = start_server()
    # print, not the "selfimprove" logger: Prefect's API log handler on it warns outside a flow run
    print(f"{time.strftime('%H:%M:%S')} temporary Prefect server on {api.removesuffix('/api')} "
          f"({time.monotonic() - started:.0f}s to start; stops with this run)", file=sys.stderr, flush=True)
    # The temporary server has no UI: blank PREFECT_UI_URL (unless the user set it) so Prefect's
    # "View at http://127.0.0.1:<port>/runs/..." lines do not point at a page that never existed.
    values = {"PREFECT_API_URL": api, **({} if "PREFECT_UI_URL" in os.environ else {"PREFECT_UI_URL": ""})}
    try:
        with _environment(values):
            try:
                yield api
            finally:
                _drain_prefect_workers()
    finally:
        stop(proc)


def _drain_prefect_workers(timeout: float = 10.0) -> None:
    """Send Prefect's queued logs and events while the server still answers (as prefect_test_harness does)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - losing a few log lines must not fail a finished run
            log.debug("draining %s: %s", worker.__name__, exc)
