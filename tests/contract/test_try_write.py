"""Bookkeeping writes made while serving reads never wait long for SQLite's write lock."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from cargohold.storage.meta.engine import make_engine, migrate, sqlite_url
from cargohold.storage.meta.store import MetadataStore


def test_bookkeeping_writes_give_up_instead_of_waiting(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    migrate(engine)
    store = MetadataStore(engine)
    repo = store.create_repository("000000000000", "busy/repo", 1)
    assert store.record_pull(repo.id, "sha256:" + "a" * 64, 2) is True
    holder = sqlite3.connect(str(tmp_path / "meta.db"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock (a GC sweep, say)
    try:
        started = time.monotonic()
        assert store.record_pull(repo.id, "sha256:" + "a" * 64, 3) is False
        assert store.touch_link(repo.id, "sha256:" + "b" * 64, 3) is False
        assert time.monotonic() - started < 2.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.touch_link(repo.id, "sha256:" + "b" * 64, 4) is True
    # The connections went back to the pool with the normal wait restored.
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        assert raw.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    engine.dispose()
