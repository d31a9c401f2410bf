"""`selfimprove ui`: the Prefect server (flow runs, schedules, artifacts) and the MLflow UI
(iterations side by side, registered models) on loopback, stopped together on Ctrl-C.

Both are the projects' own servers started as child processes, each in its own session so a
terminal's Ctrl-C reaches only us and we stop them in order. Runs made without PREFECT_API_URL
use Prefect's ephemeral server on the same database ($PREFECT_HOME/prefect.db), so they show up
here too; schedules (`selfimprove serve`) need this server running.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HEALTH = {"prefect": "/api/health", "mlflow": "/health"}


def _bin(name: str) -> str:
    """The console script installed next to this interpreter (the venv's), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def server_commands(cfg, host: str, prefect_port: int, mlflow_port: int) -> dict[str, list[str]]:
    from models.registry import tracking_uri

    artifacts = (Path(cfg.data_dir).resolve() / "mlartifacts").as_uri()
    return {
        "prefect": [_bin("prefect"), "server", "start", "--host", host, "--port", str(prefect_port)],
        "mlflow": [_bin("mlflow"), "server", "--host", host, "--port", str(mlflow_port), "--workers", "1",
                   "--backend-store-uri", tracking_uri(cfg), "--default-artifact-root", artifacts],
    }


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _stop(procs: dict[str, subprocess.Popen], grace: float = 20.0) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs.values():
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def run_ui(cfg, host: str = "127.0.0.1", prefect_port: int = 4200, mlflow_port: int = 5000,
           startup_timeout: float = 180.0) -> int:
    """Start both servers, print their URLs, wait for Ctrl-C (or SIGTERM), stop both. Returns an exit code."""
    log_dir = Path(cfg.data_dir) / "ui"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no extra job-runner workers
    # The Prefect UI's pages call the API at this URL; left unset it is :4200 whatever --port says
    # (found by the browser test: every page showed "Can't connect to Server API").
    envs = {"prefect": {**env, "PREFECT_SERVER_UI_API_URL": f"http://{host}:{prefect_port}/api"}, "mlflow": env}
    ports = {"prefect": prefect_port, "mlflow": mlflow_port}
    procs: dict[str, subprocess.Popen] = {}
    stop_requested = []

    def request_stop(signum, _frame):
        stop_requested.append(signum)
    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for name, command in server_commands(cfg, host, prefect_port, mlflow_port).items():
            with open(log_dir / f"{name}.log", "ab") as log_file:
                procs[name] = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=envs[name],
                                               start_new_session=True)
        urls = {name: f"http://{host}:{ports[name]}" for name in procs}
        waiting = set(procs)
        deadline = time.monotonic() + startup_timeout
        while not stop_requested:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"selfimprove ui: the {name} server exited (code {proc.returncode}); its log "
                          f"{log_dir / (name + '.log')} ends with:\n{_tail(log_dir / (name + '.log'))}", file=sys.stderr)
                    return 1
            for name in [n for n in waiting if healthy(urls[n] + HEALTH[n])]:
                waiting.discard(name)
                print(f"{name:8} {urls[name]}", flush=True)
                if not waiting:
                    print(f"ready. Point runs and schedules at this Prefect server with\n"
                          f"  export PREFECT_API_URL={urls['prefect']}/api\n"
                          f"Logs in {log_dir}. Ctrl-C stops both.", flush=True)
            if waiting and time.monotonic() > deadline:
                print(f"selfimprove ui: {', '.join(sorted(waiting))} not healthy after {startup_timeout:.0f}s; "
                      f"see {log_dir}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        print("stopping ...", flush=True)
        return 0
    finally:
        _stop(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
