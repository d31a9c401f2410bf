"""The only code that writes SQL. One DuckDB file per project.

DuckDB allows one writing process per file, so every call opens the file, does one short
transaction and closes it: a reader (`selfimprove show`, `sql`) can get in between writes, and
a killed process leaves no half-written transaction behind.

Writes take typed records (storage/records.py); reads return them (storage/queries.py).
`query` runs SQL a user or a test wrote (read-only), e.g. `selfimprove sql`.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from selfimprove.storage.queries import Queries
from selfimprove.storage.records import TABLE_OF, LedgerEntry, columns, now
from selfimprove.storage.schema import TABLES, VIEWS

__all__ = ["Store", "now"]


def _add_missing_columns(con, table: str, columns_sql: str) -> None:
    """Older project files gain the columns added to the schema since (append-only migration)."""
    have = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()}
    for part in columns_sql.split(","):
        words = part.split()
        if len(words) >= 2 and words[0].isidentifier() and words[0].upper() != "PRIMARY" and words[0] not in have:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {words[0]} {words[1]}")


class Store(Queries):
    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if not create:  # a reader: never takes the write lock, so it can run beside a writing run
            if not self.path.is_file():
                raise FileNotFoundError(f"no project database at {self.path} (wrong data_dir or project?)")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            for name, columns_sql in TABLES.items():
                con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns_sql})")
                _add_missing_columns(con, name, columns_sql)
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
    def add(self, records: list) -> int:
        """Insert typed records (all of one type), ignoring those whose key already exists.
        Returns the rows actually added."""
        if not records:
            return 0
        kind = type(records[0])
        if kind not in TABLE_OF or any(type(r) is not kind for r in records):
            raise TypeError(f"Store.add takes records of one storage/records.py type, got {kind.__name__}")
        table, names = TABLE_OF[kind], columns(kind)
        batch = pa.Table.from_pydict({n: [getattr(r, n) for r in records] for n in names})
        col_sql = ", ".join(names)
        with self.connect() as con:
            con.register("batch", batch)
            # DuckDB answers an INSERT with the number of rows it inserted (ignored duplicates excluded).
            added = con.execute(f"INSERT OR IGNORE INTO {table} ({col_sql}) SELECT {col_sql} FROM batch").fetchall()
            con.unregister("batch")
        return added[0][0]

    def update_run(self, run_id: str, *, mlflow_run_id: str, prefect_flow_run_id: str) -> None:
        """The one in-place write on a run: the late-known MLflow and Prefect ids."""
        with self.connect() as con:
            con.execute("UPDATE runs SET mlflow_run_id = ?, prefect_flow_run_id = ? WHERE run_id = ?",
                        [mlflow_run_id, prefect_flow_run_id, run_id])

    def set_iteration_model(self, run_id: str, iteration: int, model_path: str, model_hash: str) -> None:
        self._update_iteration(run_id, iteration, "model_path = ?, model_hash = ?", [model_path, model_hash])

    def set_iteration_mlflow_run(self, run_id: str, iteration: int, mlflow_run_id: str) -> None:
        self._update_iteration(run_id, iteration, "mlflow_run_id = ?", [mlflow_run_id])

    def set_iteration_accepted(self, run_id: str, iteration: int, accepted: bool) -> None:
        self._update_iteration(run_id, iteration, "accepted = ?", [accepted])

    def _update_iteration(self, run_id: str, iteration: int, sets: str, values: list) -> None:
        with self.connect() as con:
            con.execute(f"UPDATE iterations SET {sets} WHERE run_id = ? AND iteration = ?",
                        [*values, run_id, iteration])

    def mark_stage_done(self, run_id: str, iteration: int, stage: str, seconds: float, summary_json: str) -> None:
        self.add([LedgerEntry(run_id, iteration, stage, seconds, summary_json, now())])

    def discard_unfinished_grpo(self, run_id: str, iteration: int) -> int:
        """Rows of a GRPO train stage that never finished (a crashed attempt): the retrained model
        is made from new completions, so the old attempt's rows would describe a model that does
        not exist. Only called before the stage is ledgered. Returns the generations removed."""
        with self.connect() as con:
            ids = "SELECT generation_id FROM generations WHERE run_id = ? AND iteration = ? AND purpose = 'grpo'"
            con.execute(f"DELETE FROM rewards WHERE generation_id IN ({ids})", [run_id, iteration])
            removed = con.execute(f"SELECT count(*) FROM ({ids})", [run_id, iteration]).fetchall()[0][0]
            con.execute("DELETE FROM generations WHERE run_id = ? AND iteration = ? AND purpose = 'grpo'",
                        [run_id, iteration])
        return removed

    # ---- SQL written by a user or a test ----------------------------------------------------------
    def query(self, sql: str, params: list | None = None) -> list[dict]:
        """Read-only: rows as dicts (`selfimprove sql`, tests). The pipeline uses the typed reads."""
        with self.connect(read_only=True) as con:
            cur = con.execute(sql, params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]
