"""`selfimprove ui`: the Prefect server (flow runs, schedules, artifacts) and the MLflow UI
(iterations side by side, registered models) on loopback, stopped together on Ctrl-C.

Both are the projects' own servers started as child processes, each in its own session so a
terminal's Ctrl-C reaches only us and we stop them in order. Runs made without PREFECT_API_URL
use Prefect's ephemeral server on the same database ($PREFECT_HOME/prefect.db), so they show up
here too; schedules (`selfimprove serve`) need this server running.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from selfimprove.prefect_server import healthy

HEALTH = {"prefect": "/api/health", "mlflow": "/health"}


def _bin(name: str) -> str:
    """The console script installed next to this interpreter (the venv's), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def server_commands(cfg, host: str, prefect_port: int, mlflow_port: int) -> dict[str, list[str]]:
    from selfimprove.models.registry import tracking_uri

    artifacts = (Path(cfg.data_dir).resolve() / "mlartifacts").as_uri()
    return {
        "prefect": [_bin("prefect"), "server", "start", "--host", host, "--port", str(prefect_port)],
        "mlflow": [_bin("mlflow"), "server", "--host", host, "--port", str(mlflow_port), "--workers", "1",
                   "--backend-store-uri", tracking_uri(cfg), "--default-artifact-root", artifacts],
    }


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


def _mlflow_post(base: str, endpoint: str, body: dict) -> dict:
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{endpoint}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def newest_run_links(mlflow_url: str, limit: int = 3) -> list[tuple[str, str]]:
    """(run name, metric-charts URL) of the newest pipeline runs (parent runs) in the MLflow server's store."""
    from selfimprove.models.registry import run_charts_url

    experiments = _mlflow_post(mlflow_url, "experiments/search", {"max_results": 1000}).get("experiments", [])
    if not experiments:
        return []
    found = _mlflow_post(mlflow_url, "runs/search", {
        "experiment_ids": [e["experiment_id"] for e in experiments], "max_results": 200,
        "order_by": ["attributes.start_time DESC"]}).get("runs", [])
    links = []
    for run in found:
        tags = {t["key"]: t["value"] for t in run.get("data", {}).get("tags", [])}
        if "selfimprove.run_id" in tags and "mlflow.parentRunId" not in tags:
            info = run["info"]
            links.append((info.get("run_name") or tags["selfimprove.run_id"],
                          run_charts_url(mlflow_url, info["experiment_id"], info["run_id"])))
    return links[:limit]


def _print_run_links(mlflow_url: str) -> None:
    try:
        links = newest_run_links(mlflow_url)
    except (OSError, ValueError, KeyError) as exc:  # the links are a convenience: never fail the UI over them
        print(f"(could not list runs from MLflow: {exc})", flush=True)
        return
    if links:
        print("metric charts of the newest runs:", flush=True)
        for name, url in links:
            print(f"  {name}  {url}", flush=True)


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
                    log = log_dir / f"{name}.log"
                    print(f"selfimprove ui: the {name} server exited (code {proc.returncode}); its log "
                          f"{log} ends with:\n{_tail(log)}", file=sys.stderr)
                    return 1
            for name in [n for n in waiting if healthy(urls[n] + HEALTH[n])]:
                waiting.discard(name)
                print(f"{name:8} {urls[name]}", flush=True)
                if not waiting:
                    _print_run_links(urls["mlflow"])
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
