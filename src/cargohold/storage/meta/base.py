"""What every part of the metadata store shares: the engine, its transactions, dialect helpers.

Writers open their transaction with `write=True` (SQLite: BEGIN IMMEDIATE).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from cargohold.storage.meta.hot import SqliteHotReads


class StoreBase:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name
        database = engine.url.database
        # SQLite: the per-request reads skip SQLAlchemy (see hot.py); PostgreSQL keeps the Core path.
        self._hot = SqliteHotReads(database) if self._dialect == "sqlite" and database else None

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        try:
            with self.engine.connect().execution_options(write=True) as conn, conn.begin():
                yield conn
        finally:
            self._wrote()

    def _wrote(self) -> None:
        if self._hot is not None:  # reads in a request scope must see this process's own writes
            self._hot.writes += 1

    @property
    def hot(self) -> SqliteHotReads | None:
        """The SQLite fast path for per-request reads (None on PostgreSQL)."""
        return self._hot

    def request_scope(self) -> AbstractContextManager[None]:
        """The per-request reads inside share one look at the database (SQLite: see hot.py)."""
        return self._hot.scope() if self._hot is not None else nullcontext()

    @contextmanager
    def write_unsynced(self) -> Iterator[Connection]:
        """A write whose commit does not wait for the disk: atomic and visible at once, durable
        against a process crash, but an OS crash may undo it (SQLite synchronous=NORMAL,
        PostgreSQL synchronous_commit=off; neither can corrupt the database).

        For an upload's offset after a PATCH: the chunk's bytes are not fsync'd then either (only
        completion is durable), and a commit that waited for the disk cost 4 ms per chunk."""
        if self._dialect != "sqlite":
            with self.write() as conn:
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                yield conn
            return
        with self._sqlite_write_with("synchronous=NORMAL", "synchronous=FULL") as conn, conn.begin():
            yield conn

    @contextmanager
    def try_write(self, wait_ms: int = 50) -> Iterator[Connection | None]:
        """A write transaction that gives up (yields None) rather than wait long for SQLite's lock.

        For bookkeeping writes made while serving a read on the event loop: they must never stall
        the loop behind a long writer (a GC sweep, a big commit).
        """
        if self._dialect != "sqlite":
            with self.write() as conn:
                yield conn
            return
        with self._sqlite_write_with(f"busy_timeout={int(wait_ms)}", "busy_timeout=30000") as conn:
            try:
                transaction = conn.begin()
            except OperationalError:
                yield None
                return
            with transaction:
                yield conn

    @contextmanager
    def _sqlite_write_with(self, pragma: str, restore: str) -> Iterator[Connection]:
        """A SQLite write connection (no transaction begun) with `PRAGMA <pragma>` in force, set back
        with `restore` before the connection returns to the pool."""
        with self.engine.connect().execution_options(write=True) as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute(f"PRAGMA {pragma}")
            try:
                yield conn
            finally:
                raw.execute(f"PRAGMA {restore}")
                self._wrote()

    def _insert_ignore(self, conn: Connection, table: Any, values: dict[str, Any]) -> None:
        dialect_insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        conn.execute(dialect_insert(table).values(**values).on_conflict_do_nothing())

    def _upsert(self, conn: Connection, table: Any, values: dict[str, Any], keys: list[str],
                updates: dict[str, Any]) -> None:
        dialect_insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        stmt = dialect_insert(table).values(**values)
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=updates))

    def _lexical(self, column: Any) -> Any:
        """The column compared and ordered byte-wise (what SQLite's BINARY collation does).

        A PostgreSQL database's default collation is usually a natural-language one
        (en_US.UTF-8, ICU) in which "B" < "a" is false and punctuation sorts differently, so
        names would list in a different order than on SQLite and than the spec requires.
        """
        return column.collate("C") if self._dialect == "postgresql" else column
