"""The only code that writes SQL. One DuckDB file per project.

DuckDB allows one writing process per file, so every call opens the file, does one short
transaction and closes it: a reader (`selfimprove show`, `sql`) can get in between writes, and
a killed process leaves no half-written transaction behind.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from storage.schema import TABLES, VIEWS


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _add_missing_columns(con, table: str, columns_sql: str) -> None:
    """Older project files gain the columns added to the schema since (append-only migration)."""
    have = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()}
    for part in columns_sql.split(","):
        words = part.split()
        if len(words) >= 2 and words[0].isidentifier() and words[0].upper() != "PRIMARY" and words[0] not in have:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {words[0]} {words[1]}")


class Store:
    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if not create:  # a reader: never takes the write lock, so it can run beside a writing run
            if not self.path.is_file():
                raise FileNotFoundError(f"no project database at {self.path} (wrong data_dir or project?)")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            for name, columns in TABLES.items():
                con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
                _add_missing_columns(con, name, columns)
            for name, query in VIEWS.items():
                con.execute(f"CREATE OR REPLACE VIEW {name} AS {query}")

    @contextmanager
    def connect(self, read_only: bool = False, retries: int = 50):
        """Open the file; retry briefly while another process holds the write lock."""
        for attempt in range(retries):
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or attempt == retries - 1:
                    raise
                time.sleep(0.1)
        try:
            yield con
        finally:
            con.close()

    # ---- writes -------------------------------------------------------------------------------
    def append(self, table: str, rows: list[dict]) -> int:
        """Insert rows, ignoring those whose key already exists. Returns rows actually added."""
        if not rows:
            return 0
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}")
        columns = list(rows[0])
        batch = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])
        col_sql = ", ".join(columns)
        with self.connect() as con:
            before = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            con.register("batch", batch)
            con.execute(f"INSERT OR IGNORE INTO {table} ({col_sql}) SELECT {col_sql} FROM batch")
            after = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            con.unregister("batch")
        return after - before

    def update_run(self, run_id: str, **fields) -> None:
        """The one in-place write: late-known ids (MLflow, Prefect) on the run's own row."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.connect() as con:
            con.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", [*fields.values(), run_id])

    def update_iteration(self, run_id: str, iteration: int, **fields) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.connect() as con:
            con.execute(f"UPDATE iterations SET {sets} WHERE run_id = ? AND iteration = ?",
                        [*fields.values(), run_id, iteration])

    def mark_stage_done(self, run_id: str, iteration: int, stage: str, seconds: float, summary: dict) -> None:
        self.append("stage_ledger", [{
            "run_id": run_id, "iteration": iteration, "stage": stage, "seconds": seconds,
            "summary_json": json.dumps(summary, default=float), "finished_at": now()}])

    # ---- reads --------------------------------------------------------------------------------
    def query(self, sql: str, params: list | None = None) -> list[dict]:
        with self.connect(read_only=True) as con:
            cur = con.execute(sql, params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def stage_summary(self, run_id: str, iteration: int, stage: str) -> dict | None:
        rows = self.query("SELECT summary_json FROM stage_ledger WHERE run_id = ? AND iteration = ? AND stage = ?",
                          [run_id, iteration, stage])
        return json.loads(rows[0]["summary_json"]) if rows else None

    def run(self, run_id: str) -> dict | None:
        rows = self.query("SELECT * FROM runs WHERE run_id = ?", [run_id])
        return rows[0] if rows else None

    def iteration(self, run_id: str, iteration: int) -> dict | None:
        rows = self.query("SELECT * FROM iterations WHERE run_id = ? AND iteration = ?", [run_id, iteration])
        return rows[0] if rows else None

    def prompts(self, run_id: str, split: str) -> list[dict]:
        return self.query("SELECT * FROM prompts WHERE run_id = ? AND split = ? ORDER BY prompt_id",
                          [run_id, split])

    def generations(self, run_id: str, iteration: int, purpose: str) -> list[dict]:
        return self.query(
            "SELECT * FROM generations WHERE run_id = ? AND iteration = ? AND purpose = ? "
            "ORDER BY prompt_id, sample_index", [run_id, iteration, purpose])

    def judgments(self, run_id: str, iteration: int) -> list[dict]:
        return self.query("SELECT * FROM judgments WHERE run_id = ? AND iteration = ? ORDER BY judgment_id",
                          [run_id, iteration])

    def pairs(self, run_id: str, iteration: int) -> list[dict]:
        return self.query(
            "SELECT p.*, pr.prompt_text, c.text AS chosen_text, r.text AS rejected_text FROM pairs p "
            "JOIN prompts pr ON pr.run_id = p.run_id AND pr.prompt_id = p.prompt_id "
            "JOIN generations c ON c.generation_id = p.chosen_generation_id "
            "JOIN generations r ON r.generation_id = p.rejected_generation_id "
            "WHERE p.run_id = ? AND p.iteration = ? ORDER BY p.prompt_id", [run_id, iteration])

    def evaluations(self, run_id: str) -> list[dict]:
        return self.query("SELECT * FROM evaluations WHERE run_id = ? ORDER BY iteration, split, metric", [run_id])

    def runs(self) -> list[dict]:
        return self.query("SELECT run_id, project, method, created_at, seed_model FROM runs ORDER BY created_at")

    def latest_unfinished_run(self, config_hash: str, iterations: int) -> str | None:
        """The newest run with this config whose last iteration has not been gated (it stopped early)."""
        rows = self.query(
            "SELECT run_id FROM runs r WHERE config_hash = ? AND NOT EXISTS (SELECT 1 FROM stage_ledger l "
            "WHERE l.run_id = r.run_id AND l.stage = 'gate' AND l.iteration = ?) ORDER BY created_at DESC LIMIT 1",
            [config_hash, iterations])
        return rows[0]["run_id"] if rows else None
