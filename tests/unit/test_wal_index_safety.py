"""The WAL-index mapping must never weaken SQLite's own locking.

Closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's too. A
reader that opened the -shm file to map it and then closed that descriptor dropped SQLite's lock
that keeps other processes from resetting (truncating) the WAL-index: the next process to open
the database then truncated it under the reader's mappings, and the reader died of SIGBUS (seen
once as a worker vanishing in tests/api/test_gc_stress.py). Here a reader process maps and reads
while this process opens, writes and closes the database again and again, as `cargohold gc` does.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

READER = textwrap.dedent("""
    import sys, time
    from cargohold.storage.meta.hot import SqliteHotReads
    reads = SqliteHotReads(sys.argv[1])
    deadline = time.monotonic() + 3
    while reads._wal_index is None and time.monotonic() < deadline:  # mapped at once, or a second later
        reads.one("SELECT v FROM t WHERE id = ?", (0,))
        time.sleep(0.05)
    print("mapped" if reads._wal_index is not None else "not mapped", flush=True)
    last, deadline = None, time.monotonic() + 20
    while time.monotonic() < deadline:
        row = reads.one("SELECT v FROM t WHERE id = ?", (0,))
        if row.v != last:
            last = row.v
            print(last, flush=True)
        if last == -1:
            break
        time.sleep(0.001)
""")
DMS_LOCK = 128  # the byte of the -shm file SQLite read-locks while a process uses the WAL-index


def _dms_free(shm: Path) -> bool:
    """Whether no other process holds SQLite's DMS lock (we could take it exclusively)."""
    fd = os.open(shm, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, DMS_LOCK)
    except OSError:
        return False
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, DMS_LOCK)
        return True
    finally:
        os.close(fd)  # our own lock only: this test process holds no SQLite connection now


def test_a_mapped_reader_keeps_sqlite_locks_and_survives_other_processes(tmp_path: Path) -> None:
    db = tmp_path / "meta.db"
    setup = sqlite3.connect(db, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    setup.execute("INSERT INTO t VALUES (0, 0)")
    setup.close()

    reader = subprocess.Popen([sys.executable, "-c", READER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "mapped"
        assert reader.stdout.readline().strip() == "0"
        assert not _dms_free(Path(f"{db}-shm"))  # the reader still holds SQLite's lock
        for n in range(1, 40):  # open, write, close: each time a fresh connection, as a CLI would
            writer = sqlite3.connect(db, isolation_level=None)
            writer.execute("UPDATE t SET v = ? WHERE id = 0", (n,))
            writer.close()
            time.sleep(0.005)
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute("UPDATE t SET v = -1 WHERE id = 0")
        writer.close()
        seen = [line.strip() for line in reader.stdout]
        assert reader.wait(timeout=30) == 0, f"reader died: exit {reader.returncode}"
        assert seen[-1] == "-1"  # and it saw the last commit through the mapping
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
