"""SqliteHotReads remembers results only within bounds: a per-thread cache must not grow with the
size of what it reads (manifests go up to 4 MiB)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

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


def test_a_scope_looks_once_unless_this_process_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "meta.db"
    make_db(db, [10, 20, 30])
    reads = SqliteHotReads(str(db))
    calls: list[int] = []
    look = reads._changed

    def counted(conn: sqlite3.Connection) -> bool:
        calls.append(1)
        return look(conn)
    monkeypatch.setattr(reads, "_changed", counted)

    def looks() -> int:
        count = len(calls)
        calls.clear()
        return count

    for i in range(3):
        reads.one("SELECT body FROM t WHERE id = ?", (i,))
    assert looks() == 3  # outside a scope: every read looks
    with reads.scope():
        for i in range(3):
            reads.one("SELECT body FROM t WHERE id = ?", (i,))
        assert looks() == 1
        reads.writes += 1  # what StoreBase does after each write transaction
        reads.one("SELECT body FROM t WHERE id = ?", (0,))
        reads.one("SELECT body FROM t WHERE id = ?", (1,))
        assert looks() == 1
    with reads.scope():
        reads.one("SELECT body FROM t WHERE id = ?", (0,))
        assert looks() == 1  # every scope looks once


def test_commits_by_another_connection_are_seen_through_the_wal_index_without_asking(tmp_path: Path) -> None:
    """With the -shm file mapped, a look costs no statement; another connection's commit changes the
    header and the next read sees the new row. SQLite itself is still asked once a second."""
    db = tmp_path / "meta.db"
    make_db(db, [1])
    writer = sqlite3.connect(db, isolation_level=None)  # keeps the WAL (and its -shm) alive, as servers do
    writer.execute("SELECT 1 FROM t").fetchall()
    reads = SqliteHotReads(str(db))
    statements: list[str] = []
    reads._conn().set_trace_callback(statements.append)
    assert len(reads.one("SELECT body FROM t WHERE id = ?", (0,)).body) == 1
    assert reads._wal_index is not None  # mapped
    statements.clear()
    for _ in range(5):
        assert len(reads.one("SELECT body FROM t WHERE id = ?", (0,)).body) == 1
    assert statements == []  # remembered, and no PRAGMA asked: the header did not move
    for size in (2, 3, 4):
        writer.execute("UPDATE t SET body = ? WHERE id = 0", (b"y" * size,))
        assert len(reads.one("SELECT body FROM t WHERE id = ?", (0,)).body) == size
    assert not any(s.startswith("PRAGMA") for s in statements)
    reads._local.pragma_due = 0.0  # a second later: SQLite is asked again
    reads.one("SELECT body FROM t WHERE id = ?", (0,))
    assert any(s.startswith("PRAGMA data_version") for s in statements)
    writer.close()


def test_without_a_wal_index_every_look_asks_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "meta.db"
    conn = sqlite3.connect(db, isolation_level=None)  # rollback journal: no -shm file at all
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    conn.execute("INSERT INTO t VALUES (0, x'00')")
    reads = SqliteHotReads(str(db))
    assert reads.one("SELECT body FROM t WHERE id = ?", (0,)).body == b"\x00"
    assert reads._wal_index is None
    conn.execute("UPDATE t SET body = x'0102' WHERE id = 0")
    assert reads.one("SELECT body FROM t WHERE id = ?", (0,)).body == b"\x01\x02"
    conn.close()
