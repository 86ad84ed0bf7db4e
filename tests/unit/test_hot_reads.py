"""SqliteHotReads remembers results only within bounds: a per-thread cache must not grow with the
size of what it reads (manifests go up to 4 MiB)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cargohold.storage.meta.hot import _HELD_LIMIT, _ROW_LIMIT, SqliteHotReads


def make_db(path: Path, sizes: list[int]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, b"x" * n) for i, n in enumerate(sizes)])
    conn.commit()
    conn.close()


def test_large_rows_are_read_again_not_held(tmp_path: Path) -> None:
    db = tmp_path / "meta.db"
    make_db(db, [100, _ROW_LIMIT + 1])
    reads = SqliteHotReads(str(db))
    for _ in range(2):
        assert len(reads.one("SELECT body FROM t WHERE id = ?", (0,)).body) == 100
        assert len(reads.one("SELECT body FROM t WHERE id = ?", (1,)).body) == _ROW_LIMIT + 1
    assert list(reads._local.results) == [("SELECT body FROM t WHERE id = ?", (0,))]
    assert reads._local.held == 100


def test_held_bytes_stay_bounded(tmp_path: Path) -> None:
    db = tmp_path / "meta.db"
    count = 2 * _HELD_LIMIT // _ROW_LIMIT + 2
    make_db(db, [_ROW_LIMIT] * count)
    reads = SqliteHotReads(str(db))
    for i in range(count):
        assert len(reads.one("SELECT body FROM t WHERE id = ?", (i,)).body) == _ROW_LIMIT
        assert reads._local.held <= _HELD_LIMIT + _ROW_LIMIT
