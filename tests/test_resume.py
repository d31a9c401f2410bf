"""Crash and resume with real process kills: a run is SIGKILLed half-way through a stage (twice, in
different stages), resumed with `selfimprove run CONFIG --resume RUN_ID`, and ends with exactly the
rows an uninterrupted run has: none missing, none duplicated, work written before the kill kept."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from selfimprove.config import config_from_dict
from selfimprove.models.engines import vllm_available
from selfimprove.tasks.common import store_for
from tests.conftest import tiny_config_tree

pytestmark = pytest.mark.skipif(not vllm_available(), reason="uses vLLM like the real CLI")
ROOT = Path(__file__).resolve().parents[1]


def cli(config_path, *args, crash_at=None, home=None):
    """Run the CLI in its own process group, output to a file. (Its temporary Prefect server dies
    with it: tests/test_prefect_server.py; the group kill below is only a safety net.)"""
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    if crash_at:
        env["SELFIMPROVE_CRASH_AT"] = crash_at
    log = Path(home).parent / f"cli-{len(list(Path(home).parent.glob('cli-*.log')))}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "selfimprove.cli", "run", str(config_path), *args],
                                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=600)
        finally:
            try:  # a safety net: nothing of the killed process should be left
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    text = log.read_text()
    return subprocess.CompletedProcess(proc.args, proc.returncode, text, text)


def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path, tiny_model_dir):
    tree = tiny_config_tree(tmp_path / "data", tiny_model_dir)
    tree["engine"]["write_every"] = 2  # commit every 2 prompts/candidates: the kill lands mid-stage
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(tree))
    store = store_for(config_from_dict(tree))

    first = cli(config_path, "--run-id", "crashy", crash_at="judge:1", home=tmp_path / "prefect")
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    done = {(r["iteration"], r["stage"]) for r in store.query("SELECT iteration, stage FROM stage_ledger", [])}
    assert (1, "generate") in done and (1, "judge") not in done
    kept = store.query("SELECT judgment_id, created_at FROM judgments ORDER BY judgment_id", [])
    assert 0 < len(kept) < 18  # killed after the first chunk of judgments was committed

    second = cli(config_path, "--resume", "crashy", crash_at="generate_train:2", home=tmp_path / "prefect")
    assert second.returncode == -signal.SIGKILL, second.stderr[-3000:]
    assert 0 < store.query("SELECT count(*) AS n FROM generations WHERE iteration = 2 AND purpose = 'train'",
                           [])[0]["n"] < 18

    third = cli(config_path, "--resume", "crashy", home=tmp_path / "prefect")
    assert third.returncode == 0, third.stderr[-3000:]
    assert "run crashy finished" in third.stdout

    def n(sql):
        return store.query(sql, [])[0]["n"]

    for it in (1, 2):
        assert n(f"SELECT count(*) AS n FROM generations WHERE iteration={it} AND purpose='train'") == 18
        assert n(f"SELECT count(DISTINCT generation_id) AS n FROM judgments WHERE iteration={it}") == 18
        assert n(f"SELECT count(*) AS n FROM judgments WHERE iteration={it}") == 18
        assert n(f"SELECT count(*) AS n FROM pairs WHERE iteration={it}") + \
            n(f"SELECT count(*) AS n FROM pair_drops WHERE iteration={it}") == 6
        assert n(f"SELECT count(*) AS n FROM train_runs WHERE iteration={it}") == 1
    for it in (0, 1, 2):
        assert n(f"SELECT count(*) AS n FROM generations WHERE iteration={it} AND purpose='eval_greedy'") == 6
    assert n("SELECT count(*) AS n FROM stage_ledger") == 4 + 2 * 8
    # The judgments committed before the first kill were kept, not redone.
    ids = [k["judgment_id"] for k in kept]
    again_rows = store.query("SELECT judgment_id, created_at FROM judgments WHERE judgment_id IN "
                             f"({', '.join('?' * len(ids))}) ORDER BY judgment_id", ids)
    assert again_rows == kept
    assert n("SELECT count(*) AS n FROM runs") == 1

    again = cli(config_path, "--resume", "nope", home=tmp_path / "prefect")
    assert again.returncode == 2 and "--resume nope: no such run" in again.stderr
