"""Stage progress: a log line per chunk always; a terminal progress bar only when stderr is a TTY."""
import io
import logging
import sys
import time

from selfimprove.tasks.common import progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_logs_each_chunk_and_draws_a_bar_only_in_a_terminal(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="selfimprove")
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    progress("generate[train]", 1, 32, 64, time.perf_counter())
    progress("generate[train]", 1, 64, 64, time.perf_counter())
    # CI logs and files stay free of carriage-return redraws. (Only the bar is checked: a Prefect log
    # handler set up by an earlier test may also write here.)
    assert "\r" not in piped.getvalue() and "/64 [" not in piped.getvalue()
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "iteration 1 generate[train]: 32/64", "iteration 1 generate[train]: 64/64"]

    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    progress("judge", 2, 32, 96, time.perf_counter())
    assert "iteration 2 judge:  33%" in terminal.getvalue() and "32/96" in terminal.getvalue()
    progress("judge", 2, 96, 96, time.perf_counter())
    assert "96/96" in terminal.getvalue()
    progress("judge", 2, 32, 96, time.perf_counter())  # the finished bar was closed: a rerun draws a new one
    assert terminal.getvalue().count("0/96 [") == 2
