"""Reading a project file while another process writes it (what `selfimprove sql/show/report` do
during a run): DuckDB allows one writing process per file, so writers hold it only for short
transactions and readers retry briefly on the lock. Two real processes, bounded loops."""
import subprocess
import sys

from selfimprove.storage.db import Store

WRITER = """
import sys
from selfimprove.storage.db import Store
from selfimprove.storage.records import Evaluation
store = Store(sys.argv[1])
for batch in range(150):
    store.add([Evaluation("w", batch, "heldout", f"m{i}", float(i), "h") for i in range(10)])
"""


def test_reader_sees_a_growing_file_while_another_process_writes(tmp_path):
    path = tmp_path / "p.duckdb"
    Store(path)  # schema first, then the writer process
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=tmp_path,
                              env={"PATH": "/usr/bin:/bin"})
    reader = Store(path, create=False)
    counts = []
    try:
        for _ in range(2000):  # bounded: the writer needs a few seconds
            counts.append(reader.query("SELECT count(*) AS n FROM evaluations")[0]["n"])
            if writer.poll() is not None:
                break
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert counts == sorted(counts) and len(counts) >= 5
    assert len(set(counts)) > 1  # reads interleaved with the writes
    assert reader.query("SELECT count(*) AS n FROM evaluations")[0]["n"] == 1500
