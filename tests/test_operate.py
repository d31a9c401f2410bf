"""Operating runs for real: `selfimprove ui` (a real Prefect server and MLflow server on loopback),
`selfimprove serve` (a cron deployment on that server that creates scheduled runs, executes one and
resumes a crashed run), and Ctrl-C stopping both servers. About two minutes: real servers, real runs."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from selfimprove.config import config_from_dict
from selfimprove.models.engines import vllm_available
from selfimprove.prefect_server import healthy
from selfimprove.tasks.common import store_for
from tests.conftest import tiny_config_tree

pytestmark = pytest.mark.skipif(not vllm_available(), reason="runs use vLLM")
CLI = [sys.executable, "-m", "selfimprove.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited {proc.returncode}:\n{proc.stdout.read()}")
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def child_env(home: Path, api_url: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


class UI:
    def __init__(self, home: Path, data_dir: Path):
        self.home, self.data_dir = home, data_dir
        self.prefect_port, self.mlflow_port = free_port(), free_port()
        self.prefect = f"http://127.0.0.1:{self.prefect_port}"
        self.mlflow = f"http://127.0.0.1:{self.mlflow_port}"
        self.api = self.prefect + "/api"
        self.proc = subprocess.Popen(
            [*CLI, "ui", "--prefect-port", str(self.prefect_port), "--mlflow-port", str(self.mlflow_port),
             "--set", f"data_dir={data_dir}"], env=child_env(home, None), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.banner = []
        wait_for(lambda: self._line_seen("ready."), 240, "`selfimprove ui` to print ready", self.proc)
        self.banner += [self.proc.stdout.readline() for _ in range(2)]  # the export hint and the log folder

    def _line_seen(self, text: str) -> bool:
        line = self.proc.stdout.readline()
        self.banner.append(line)
        return text in line

    def ctrl_c(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)  # what a terminal sends to its foreground group
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def ui(tmp_path_factory, tiny_model_dir):
    from selfimprove.models.registry import start_parent_run

    home = tmp_path_factory.mktemp("operate")
    # A pipeline run already in the MLflow store: `ui` links its metric charts once ready.
    cfg = config_from_dict(tiny_config_tree(home / "data", tiny_model_dir, project="seeded"))
    seeded_id = start_parent_run(cfg, "seeded-run", None, {})
    servers = UI(home, home / "data")
    servers.seeded_id = seeded_id
    yield servers
    if servers.proc.poll() is None:
        servers.ctrl_c()


def write_config(path: Path, data_dir: Path, model_dir: Path) -> Path:
    tree = tiny_config_tree(data_dir, model_dir, iterations=1, project="ops", engine={"name": "vllm",
                                                                                     "max_model_len": 1024})
    path.write_text(yaml.safe_dump(tree))
    return path


def test_ui_prints_urls_and_both_servers_answer(ui):
    import mlflow

    from selfimprove.models.registry import run_charts_url

    text = "".join(ui.banner)
    assert f"prefect  {ui.prefect}" in text and f"mlflow   {ui.mlflow}" in text
    assert f"export PREFECT_API_URL={ui.api}" in text
    assert healthy(ui.api + "/health") and healthy(ui.mlflow + "/health")
    # direct links to the newest runs' metric charts, not the experiment page (MLflow's GenAI overview)
    experiment_id = mlflow.MlflowClient(ui.mlflow).get_run(ui.seeded_id).info.experiment_id
    link = run_charts_url(ui.mlflow, experiment_id, ui.seeded_id)
    assert link == f"{ui.mlflow}/#/experiments/{experiment_id}/runs/{ui.seeded_id}/model-metrics"
    assert f"  seeded-run  {link}\n" in text, text


def test_serve_cron_schedules_runs_and_a_scheduled_run_resumes_a_crashed_one(ui, tiny_model_dir):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter

    config = write_config(ui.home / "ops.yaml", ui.data_dir, tiny_model_dir)
    env = child_env(ui.home, ui.api)
    # A run that dies (SIGKILL) in iteration 1's judge stage: an unfinished run of this config.
    crashed = subprocess.run([*CLI, "run", str(config), "--run-id", "crashed"],
                             env={**env, "SELFIMPROVE_CRASH_AT": "judge:1"}, capture_output=True, text=True,
                             timeout=600)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    cfg = config_from_dict(yaml.safe_load(config.read_text()))
    assert store_for(cfg).latest_unfinished_run(cfg.fingerprint(), 1) == "crashed"

    serve = subprocess.Popen([*CLI, "serve", str(config), "--cron", "0 3 * * *", "--name", "nightly",
                              "--resume-unfinished"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    try:
        with SyncPrefectClient(ui.api) as client:
            deployment = wait_for(lambda: next(iter(client.read_deployments(limit=5)), None), 120,
                                  "the deployment", serve)
            assert deployment.name == "nightly" and deployment.parameters["resume_unfinished"] is True
            assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]
            by_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            scheduled = wait_for(lambda: client.read_flow_runs(deployment_filter=by_deployment), 60, "scheduled runs")
            assert all(r.state.type.value == "SCHEDULED" for r in scheduled)
            assert {(r.expected_start_time.hour, r.expected_start_time.minute) for r in scheduled} == {(3, 0)}

            # Start one now, as the UI's "Run" button does; the served runner executes it.
            started = client.create_flow_run_from_deployment(deployment.id)
            final = wait_for(lambda: (lambda r: r if r.state.is_final() else None)(client.read_flow_run(started.id)),
                             600, "the triggered run to finish", serve)
            assert final.state.type.value == "COMPLETED", final.state
            subflows = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [started.id]}))
    finally:
        os.killpg(serve.pid, signal.SIGKILL)
        serve.wait()
    store = store_for(cfg, create=False)
    assert [r.run_id for r in store.runs()] == ["crashed"]  # resumed, not started afresh
    assert store.latest_unfinished_run(cfg.fingerprint(), 1) is None
    assert store.ledger_entry("crashed", 1, "gate") is not None
    assert [r.name for r in subflows] == ["crashed"]


@pytest.mark.parametrize("ctrl_c", ["terminal", "serve-only"])
def test_ctrl_c_stops_serve_and_its_running_flow_run(ui, tiny_model_dir, tmp_path, ctrl_c):
    """Ctrl-C while a scheduled run executes: serve exits promptly, the run's process (and whatever it
    started) is gone and the run is marked Crashed/Cancelled. "terminal": SIGINT to serve's whole process
    group, as a terminal sends it; "serve-only": SIGINT to serve alone (e.g. `kill -INT`)."""
    from prefect.client.orchestration import SyncPrefectClient

    from tests.test_prefect_server import in_session, kill_all, wait_until_gone

    tree = tiny_config_tree(ui.data_dir, tiny_model_dir, iterations=40, project=f"stop{ctrl_c[0]}")
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump(tree))
    name = f"long-{ctrl_c}"
    serve = subprocess.Popen([*CLI, "serve", str(config), "--cron", "0 3 * * *", "--name", name],
                             env=child_env(ui.home, ui.api), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    try:
        with SyncPrefectClient(ui.api) as client:
            def deployment():
                try:
                    return client.read_deployment_by_name(f"selfimprove-scheduled/{name}")
                except Exception:  # noqa: BLE001 - not there yet
                    return None
            started = client.create_flow_run_from_deployment(wait_for(deployment, 120, "the deployment", serve).id)
            wait_for(lambda: client.read_flow_run(started.id).state.type.value == "RUNNING", 300,
                     "the triggered run to be RUNNING", serve)
            # Into the run's work: its first stage is in the ledger (vLLM loading / generating next).
            records = Path(ui.data_dir) / f"{tree['project']}.duckdb"
            wait_for(lambda: records.is_file() and store_for(config_from_dict(tree), create=False).query(
                "SELECT count(*) AS n FROM stage_ledger")[0]["n"] > 0, 300, "the run's first stage", serve)
            assert client.read_flow_run(started.id).state.type.value == "RUNNING"
            assert any("spawn_main" in p for p in in_session(serve.pid)), "no run process under serve"

            stopped_at = time.monotonic()
            if ctrl_c == "terminal":
                os.killpg(serve.pid, signal.SIGINT)
            else:
                os.kill(serve.pid, signal.SIGINT)
            try:
                code = serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                raise AssertionError("serve still running 60s after Ctrl-C") from None
            output = serve.stdout.read()
            assert code == 0, output[-3000:]
            assert time.monotonic() - stopped_at < 60
            left = wait_until_gone(lambda: in_session(serve.pid), timeout=10)
            assert not left, f"processes serve or its run started are still alive: {left}"
            final = client.read_flow_run(started.id).state
            assert final.type.value in ("CRASHED", "CANCELLED"), final
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
        kill_all(in_session(serve.pid))


CHROMIUM = os.environ.get("SELFIMPROVE_CHROMIUM", "/usr/bin/chromium")


def browse(url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran (headless Chromium), optionally a PNG of it too."""
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}",
             "--window-size=1400,1000", "--virtual-time-budget=15000"]
    if screenshot is not None:
        subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    return subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120,
                          check=True).stdout


def wait_for_page(url: str, profile: Path, expected: list[str], screenshot: Path) -> str:
    """Reload until every expected text is on the page (the UIs render from API calls); screenshot it."""
    seen = ""
    for _ in range(4):
        seen = browse(url, profile)
        if all(text in seen for text in expected):
            browse(url, profile, screenshot)
            return seen
    missing = [text for text in expected if text not in seen]
    raise AssertionError(f"{url}: {missing} not on the page; it shows:\n{seen[-3000:]}")


@pytest.mark.browser
@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                    reason=f"no Chromium at {CHROMIUM} (./scripts/setup.sh --browser)")
def test_browser_shows_the_run_its_iterations_and_metrics(ui, tiny_model_dir, tmp_path):
    """A finished tiny run seen as a user sees it, in headless Chromium: Prefect's runs list (the run
    and its iteration subflows), the flow-run page, an iteration's metrics artifact; MLflow's
    training-runs list and the run page (its iteration child runs and eval metrics)."""
    import mlflow
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterName

    from selfimprove.models.registry import experiment_name

    tree = tiny_config_tree(ui.data_dir, tiny_model_dir, iterations=2, project="browse")
    config = tmp_path / "browse.yaml"
    config.write_text(yaml.safe_dump(tree))
    run = subprocess.run([*CLI, "run", str(config), "--run-id", "browse-run"], env=child_env(ui.home, ui.api),
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    shots = Path(os.environ.get("SELFIMPROVE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    profile = tmp_path / "chromium-profile"

    with SyncPrefectClient(ui.api) as client:
        (flow_run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["browse-run"])))
        (metrics,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["browse-run-iteration-2-metrics"])))
    wait_for_page(f"{ui.prefect}/runs", profile, ["browse-run", "iteration-1", "iteration-2"],
                  shots / "prefect-runs.png")
    wait_for_page(f"{ui.prefect}/runs/flow-run/{flow_run.id}", profile, ["browse-run", "Completed"],
                  shots / "prefect-flow-run.png")
    wait_for_page(f"{ui.prefect}/artifacts/artifact/{metrics.id}", profile,
                  ["browse-run-iteration-2-metrics", "accuracy_greedy"], shots / "prefect-iteration-2-metrics.png")

    client = mlflow.MlflowClient(tracking_uri=ui.mlflow)
    experiment = client.get_experiment_by_name(experiment_name(config_from_dict(tree)))
    (parent,) = client.search_runs([experiment.experiment_id], "attributes.run_name = 'browse-run'")
    wait_for_page(f"{ui.mlflow}/#/experiments/{experiment.experiment_id}/runs", profile, ["browse-run"],
                  shots / "mlflow-training-runs.png")
    wait_for_page(f"{ui.mlflow}/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}", profile,
                  ["browse-run", "iteration-0", "iteration-1", "iteration-2", "eval/accuracy_greedy"],
                  shots / "mlflow-run.png")
    # the link the run's closing lines and `ui` print: the run's metric charts
    charts = re.search(r"Charts: +(http://127\.0\.0\.1:5000/\S+)", run.stdout).group(1)
    wait_for_page(charts.replace("http://127.0.0.1:5000", ui.mlflow), profile,
                  ["browse-run", "Model metrics", "eval/accuracy_greedy"], shots / "mlflow-charts.png")
    for png in shots.glob("*.png"):
        assert png.stat().st_size > 10_000, f"{png}: screenshot looks empty"

def test_ctrl_c_stops_both_servers(ui):
    assert ui.ctrl_c() == 0
    assert not healthy(ui.api + "/health") and not healthy(ui.mlflow + "/health")
    for port in (ui.prefect_port, ui.mlflow_port):  # the ports are free again: nothing left listening
        with socket.socket() as s:
            # SO_REUSEADDR: closed connections in TIME_WAIT do not block the bind; a listener still would.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
