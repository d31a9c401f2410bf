"""The temporary Prefect server a `selfimprove run` starts without PREFECT_API_URL: it dies with a
SIGKILLed CLI (no orphan per crash) and stops at normal exit; the run's closing lines link its
MLflow metric charts. Also the CLI's filters for warnings that tell the user nothing."""
import logging
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml

from selfimprove.env import quiet_known_noise
from selfimprove.prefect_server import die_with_parent, healthy
from tests.conftest import tiny_config_tree

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "selfimprove.cli"]
SERVER_LINE = re.compile(r"server on http://127\.0\.0\.1:(\d+)")  # ours, and Prefect's own "Starting temporary ..."


def proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name: [state, ppid, pgrp, session, ...]; None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def live_processes(predicate) -> list[str]:
    """'PID CMDLINE' of every live (not zombie) process for which predicate(pid, stat fields, cmdline) holds."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or (stat := proc_stat(int(entry))) is None or stat[0] == "Z":
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if predicate(int(entry), stat, cmdline):
            found.append(f"{entry} {cmdline[:200]}")
    return found


def in_session(sid: int) -> list[str]:
    """Live processes of session sid (a process started with start_new_session and all it started)."""
    return live_processes(lambda pid, stat, _: int(stat[3]) == sid)


def serving_port(port: int) -> list[str]:
    return live_processes(lambda pid, _, cmd: "uvicorn" in cmd and f"--port {port} " in cmd)


def wait_until_gone(what, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := what()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def kill_all(lines: list[str]) -> None:
    for line in lines:
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- the Linux mechanism, without Prefect (fast) ---

def test_a_child_started_with_die_with_parent_dies_with_a_sigkilled_parent():
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    parent = subprocess.Popen(
        [sys.executable, "-c", "import os, signal, subprocess, sys\n"
         "from selfimprove.prefect_server import die_with_parent\n"
         "child = subprocess.Popen(['sleep', '120'], preexec_fn=die_with_parent(), start_new_session=True)\n"
         "print(child.pid, flush=True)\n"
         "os.kill(os.getpid(), signal.SIGKILL)\n"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    child = int(parent.stdout.readline())
    assert parent.wait(timeout=30) == -signal.SIGKILL
    left = wait_until_gone(lambda: live_processes(lambda pid, *_: pid == child), timeout=5)
    kill_all(left)
    assert not left, f"the child outlived its SIGKILLed parent: {left}"
    assert die_with_parent() is not None


def test_prefect_api_uses_a_configured_url_and_starts_nothing():
    # temporary_settings, not the environment: an earlier test's prefect_test_harness holds a settings
    # context whose API URL would win over an environment variable.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from selfimprove.prefect_server import prefect_api

    def servers():  # uvicorn children of this process (a test harness may already run one)
        return set(live_processes(lambda pid, stat, cmd: int(stat[1]) == os.getpid() and "uvicorn" in cmd))

    before = servers()
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}), prefect_api() as url:
        assert url == "http://127.0.0.1:9/api"
        assert servers() == before


# --- noise filters (selfimprove.env) ---

def test_noise_filters_drop_the_known_messages_and_keep_others():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    quiet_known_noise()
    quiet_known_noise()  # idempotent: one filter per logger
    handler = Keep()
    mlflow_log, vllm_log = logging.getLogger("mlflow.transformers"), logging.getLogger("vllm.triton_utils.importing")
    assert sum(type(f).__name__ == "DropMessages" for f in mlflow_log.filters) == 1
    levels = {logger: logger.level for logger in (mlflow_log, vllm_log)}
    for logger in levels:  # vLLM's own logging config may have raised its level: test the filters alone
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        # the exact lines a tiny run printed every iteration
        mlflow_log.warning("The model card could not be retrieved from the hub due to %s", "Repo id must be in the "
                           "form 'repo_name' or 'namespace/repo_name': '/data/models/seed/tiny-llama'.")
        mlflow_log.warning("Unable to find license information for this model. Please verify permissible usage for "
                           "the model you are storing prior to use.")
        vllm_log.warning("Triton is installed, but doesn't include CPU backend. Disabling Triton.")
        # real warnings from the same loggers pass
        mlflow_log.warning("Failed to log the model: disk full")
        vllm_log.warning("Triton is installed, but `triton.backends` could not be imported.")
    finally:
        for logger, level in levels.items():
            logger.removeHandler(handler)
            logger.setLevel(level)
    assert records == ["Failed to log the model: disk full",
                       "Triton is installed, but `triton.backends` could not be imported."]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_noise()  # filters go first, so they win over "always"
        warnings.warn("`torch.distributed.reduce_op` is deprecated, please use `torch.distributed.ReduceOp` "
                      "instead", FutureWarning, stacklevel=1)
        warnings.warn("`some_other_api` is deprecated", FutureWarning, stacklevel=1)
        warnings.warn("`torch.distributed.reduce_op` is deprecated", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["`some_other_api` is deprecated",
                                                "`torch.distributed.reduce_op` is deprecated"]


# --- the real CLI, with vLLM (about two minutes) ---

def run_cli(tmp_path: Path, config: Path, *args: str, crash_at: str | None = None) -> tuple[int, int, str]:
    """(exit code, pid = session id, output) of the CLI run in its own session, output to a file (an
    orphan holding a pipe open would block reading it)."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_UI_URL", None)
    if crash_at:
        env["SELFIMPROVE_CRASH_AT"] = crash_at
    log = tmp_path / f"cli-{len(list(tmp_path.glob('cli-*.log')))}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*CLI, "run", str(config), *args], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    return code, proc.pid, log.read_text()


@pytest.fixture(scope="module")
def crashed_then_resumed(tmp_path_factory, tiny_model_dir):
    from selfimprove.models.engines import vllm_available

    if not vllm_available():
        pytest.skip("runs use vLLM like the real CLI")
    tmp_path = tmp_path_factory.mktemp("prefect-server")
    tree = tiny_config_tree(tmp_path / "data", tiny_model_dir, iterations=1, project="srv")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tree))
    crashed = run_cli(tmp_path, config, "--run-id", "crashy", crash_at="judge:1")
    # what is left of it a few seconds after the kill (reaped at the end, whatever the outcome)
    port = int(m.group(1)) if (m := SERVER_LINE.search(crashed[2])) else None
    left = {"session": wait_until_gone(lambda: in_session(crashed[1])),
            "server": wait_until_gone(lambda: serving_port(port)) if port else [],
            "answers": port is not None and healthy(f"http://127.0.0.1:{port}/api/health")}
    kill_all(left["session"] + left["server"])
    resumed = run_cli(tmp_path, config, "--resume", "crashy")
    yield {"tree": tree, "crashed": crashed, "port": port, "left": left, "resumed": resumed}


def test_sigkilled_run_leaves_no_prefect_server_behind(crashed_then_resumed):
    code, _, output = crashed_then_resumed["crashed"]
    assert code == -signal.SIGKILL, output[-3000:]
    assert crashed_then_resumed["port"], f"no temporary server line in the output:\n{output[-3000:]}"
    left = crashed_then_resumed["left"]
    assert not left["server"] and not left["answers"], f"the temporary Prefect server outlived the run: {left}"
    assert not left["session"], f"processes the killed run started are still alive: {left['session']}"


def test_finished_run_stops_its_server_and_links_its_metric_charts(crashed_then_resumed):
    from selfimprove.config import config_from_dict
    from selfimprove.models.registry import tracking_uri
    from selfimprove.tasks.common import store_for

    code, _, output = crashed_then_resumed["resumed"]
    assert code == 0, output[-3000:]
    port = int(SERVER_LINE.search(output).group(1))
    assert not wait_until_gone(lambda: serving_port(port), timeout=5)
    assert not healthy(f"http://127.0.0.1:{port}/api/health")
    assert "View at http://127.0.0.1" not in output  # the temporary server has no UI to link to
    cfg = config_from_dict(crashed_then_resumed["tree"])
    assert f"MLflow:  {tracking_uri(cfg)}  experiment" in output  # printed as is (no credentials in it)
    row = store_for(cfg, create=False).run("crashy")
    charts = re.search(r"Charts: +(http://127\.0\.0\.1:5000/#/experiments/(\w+)/runs/(\w+)/model-metrics)", output)
    assert charts, output[-2000:]
    assert charts.group(3) == row.mlflow_run_id
