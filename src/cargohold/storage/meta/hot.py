"""The per-request reads, as plain SQL on SQLite's own driver.

Every /v2 request looks up its access key, its repository, the registry policy and then a
manifest or a blob link. Through SQLAlchemy Core each of those costs ~0.4 ms of Python
(expression building, pool checkout, BEGIN/COMMIT events); on sqlite3 directly it is tens of
microseconds. Same schema, same results: the metadata contract suite runs these methods on
SQLite (this path) and on PostgreSQL (the Core path in MetadataStore).
"""

from __future__ import annotations

import json
import mmap
import os
import sqlite3
import sys
import threading
import time
from collections import namedtuple
from typing import Any

_JSON_COLUMNS = frozenset({"mutability_exclusions", "encryption", "resource_tags", "annotations"})
_RESULTS_LIMIT = 4096  # remembered results per connection (one connection per thread)
_HELD_LIMIT = 8 << 20  # ... and at most about this many bytes of values
_ROW_LIMIT = 256 << 10  # a larger row is not remembered
_WAL_HEADER = 48  # bytes of the WAL-index header that every commit rewrites
_WAL_INDEX_VERSION = 3007000  # its iVersion field, unchanged since SQLite 3.7.0
_PRAGMA_EVERY = 1.0  # seconds between looks that ask SQLite itself


def _size_of(values: tuple[Any, ...] | None) -> int:
    return 0 if values is None else sum(len(v) for v in values if isinstance(v, (str, bytes)))


def _row_maker(fields: tuple[str, ...]) -> Any:
    """A function turning a result tuple into a named row, decoding the JSON columns."""
    cls = namedtuple("Row", fields)  # type: ignore[misc]
    json_at = [i for i, f in enumerate(fields) if f in _JSON_COLUMNS]
    if not json_at:
        return cls._make

    def make(values: tuple[Any, ...]) -> Any:
        row = list(values)
        for i in json_at:
            if isinstance(row[i], str):
                row[i] = json.loads(row[i])
        return cls._make(row)
    return make


MANIFEST_COLUMNS = ("m.digest, m.media_type, m.artifact_type, m.subject_digest, m.config_digest, m.size, "
                    "m.image_size, m.annotations, m.pushed_at, m.last_pulled_at")


class _Scope:
    """SqliteHotReads.scope's context manager (a class: contextlib's generator version cost 3% of a
    small request)."""

    __slots__ = ("local", "outer")

    def __init__(self, local: threading.local) -> None:
        self.local = local
        self.outer: tuple[bool, int | None] = (False, None)

    def __enter__(self) -> None:
        local = self.local
        self.outer = local.scoped, local.checked
        local.scoped, local.checked = True, None

    def __exit__(self, *exc: object) -> None:
        self.local.scoped, self.local.checked = self.outer


class SqliteHotReads:
    """Read-only statements on one sqlite3 connection per thread (autocommit: one snapshot each).

    Results are remembered until the database changes: SQLite's `PRAGMA data_version` (~3 us)
    moves whenever any other connection, in any process, commits, so a remembered row is exactly
    what the query would return now. Under steady pulls that turns four queries per request into
    one pragma. Rows are rebuilt from the raw tuple on every hit, so callers never share a
    decoded (mutable) JSON value.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._makers: dict[str, Any] = {}
        self.writes = 0  # bumped by this process's writers after every write transaction (see scope)
        self._wal_index: mmap.mmap | None = None
        self._wal_fd: int | None = None  # never closed once opened (see _map_wal_index)
        self._wal_keeper: sqlite3.Connection | None = None
        self._wal_next_try = 0.0

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            self._local.version = None
            self._local.results = {}
            self._local.held = 0  # bytes of the remembered str/bytes values
            self._local.scoped = False
            self._local.checked = None  # `writes` when data_version was last asked inside a scope
            self._local.header = None  # the WAL-index header at the last look
            self._local.pragma_due = 0.0
        return conn

    def _header_view(self, now: float) -> mmap.mmap | None:
        """The database's WAL-index header (the -shm file), mapped read-only once per process, or
        None (then tried again a second later; never again after a mapping that is not usable)."""
        if self._wal_index is None and self._wal_fd is None and now >= self._wal_next_try:
            self._wal_next_try = now + _PRAGMA_EVERY
            self._map_wal_index()
        return self._wal_index

    def _map_wal_index(self) -> None:
        """Map the WAL-index without weakening SQLite's locking. Two rules, both load-bearing:

        - The descriptor opened for the mapping is never closed. Closing any descriptor of a file
          drops every POSIX lock the process holds on it, SQLite's included, and SQLite's lock on
          the -shm file is what stops another process (a `cargohold gc`, say) from resetting it:
          truncated under a mapping, the next read of it is a SIGBUS.
        - A connection of this object's own keeps the WAL-index open (SQLite's lock held) for as
          long as the mapping lives, whatever happens to the other connections of the process.
        """
        keeper = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opens the WAL-index
            fd = os.open(self.path + "-shm", os.O_RDONLY)
        except (OSError, sqlite3.Error):
            keeper.close()  # SQLite closes its own descriptors with care; there is no -shm (no WAL)
            return
        self._wal_fd, self._wal_keeper = fd, keeper  # both for the life of the process (see above)
        try:
            view = mmap.mmap(fd, _WAL_HEADER, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        except (OSError, ValueError):
            return
        if int.from_bytes(view[:4], sys.byteorder) == _WAL_INDEX_VERSION:
            self._wal_index = view

    def _changed(self, conn: sqlite3.Connection) -> bool:
        """Whether any connection, in any process, committed since this thread last looked.

        Asking SQLite (`PRAGMA data_version`) costs ~8 us and a GIL release, and re-taking the GIL
        behind the server's other threads cost a sixth of a small request. Every commit rewrites
        the WAL-index header (the first 48 bytes of the -shm file: frame count, checksums, salts;
        https://www.sqlite.org/walformat.html), so comparing those bytes through a read-only mapping
        answers the same question in well under a microsecond. SQLite is still asked once a second
        and whenever the mapping is unavailable, so nothing rests on the mapping alone."""
        local = self._local
        now = time.monotonic()
        view = self._header_view(now)
        header = view[:_WAL_HEADER] if view is not None else None
        if header is not None and now < local.pragma_due:
            if header == local.header:
                return False
            local.header = header
            return True
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        local.header, local.pragma_due = header, now + _PRAGMA_EVERY
        if version == local.version:
            return False
        local.version = version
        return True

    def scope(self) -> _Scope:
        """Reads inside see the database as of the scope's first read, plus this process's own
        writes made since: the database is looked at once, not once per read (a look was a sixth
        of a small request's CPU, four times). For the few reads of one request, which then share
        one point in time. Never hold a scope across an await."""
        self._conn()
        return _Scope(self._local)

    def one(self, sql: str, params: tuple[Any, ...]) -> Any:
        """The first row of the result (a named tuple) or None."""
        values = self._remembered(sql, params, False)
        return None if values is None else self._makers[sql](values)

    def all(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Every row of the result, as named tuples."""
        rows = self._remembered(sql, params, True)
        if not rows:
            return []
        make = self._makers[sql]
        return [make(values) for values in rows]

    def _remembered(self, sql: str, params: tuple[Any, ...], every_row: bool) -> Any:
        conn = self._conn()
        local = self._local
        results: dict[tuple[str, tuple[Any, ...]], Any] = local.results
        if not local.scoped or local.checked != self.writes:
            if local.scoped:
                local.checked = self.writes
            if self._changed(conn):
                results.clear()
                local.held = 0
        if len(results) >= _RESULTS_LIMIT or local.held > _HELD_LIMIT:
            results.clear()
            local.held = 0
        key = (sql, params)
        if key in results:
            return results[key]
        cursor = conn.execute(sql, params)
        values = tuple(cursor.fetchall()) if every_row else cursor.fetchone()
        if sql not in self._makers:
            self._makers[sql] = _row_maker(tuple(d[0] for d in cursor.description))
        cursor.close()
        held = sum(map(_size_of, values)) if every_row else _size_of(values)
        if held <= _ROW_LIMIT:  # a 4 MiB manifest is read again rather than held per thread
            results[key] = values
            local.held += held
        return values

    def identity_policies(self, user_arn: str) -> list[Any]:
        """(label, document) of every policy of a user: its inline and attached ones, and its groups'."""
        owners = "SELECT ? AS owner UNION ALL SELECT group_arn FROM group_members WHERE user_arn = ?"
        return self.all(f"SELECT o.owner || ' inline:' || i.name AS label, i.document FROM inline_policies i "
                        f"JOIN ({owners}) o ON o.owner = i.owner_arn "
                        f"UNION ALL SELECT m.arn AS label, m.document FROM managed_policies m "
                        f"JOIN policy_attachments a ON a.policy_arn = m.arn JOIN ({owners}) o ON o.owner = a.owner_arn",
                        (user_arn, user_arn, user_arn, user_arn))

    def setting(self, key: str) -> str | None:
        row = self.one("SELECT value FROM settings WHERE key = ?", (key,))
        return None if row is None else str(row.value)

    def access_key(self, key_id: str) -> Any:
        return self.one("SELECT k.key_id, k.secret_enc, k.status, k.principal_arn, p.account_id, p.kind, p.name, "
                        "p.user_id FROM access_keys k JOIN principals p ON p.arn = k.principal_arn "
                        "WHERE k.key_id = ?", (key_id,))

    def repository(self, account_id: str, name: str) -> Any:
        return self.one("SELECT * FROM repositories WHERE account_id = ? AND name = ?", (account_id, name))

    def manifest(self, repository_id: int, digest: str, with_content: bool) -> Any:
        content = ", m.content" if with_content else ""
        return self.one(f"SELECT {MANIFEST_COLUMNS}{content} FROM manifests m "
                        "WHERE m.repository_id = ? AND m.digest = ?", (repository_id, digest))

    def manifest_by_tag(self, repository_id: int, tag: str, with_content: bool) -> Any:
        content = ", m.content" if with_content else ""
        return self.one(f"SELECT {MANIFEST_COLUMNS}{content} FROM tags t JOIN manifests m "
                        "ON m.repository_id = t.repository_id AND m.digest = t.digest "
                        "WHERE t.repository_id = ? AND t.name = ?", (repository_id, tag))

    def repository_blob(self, repository_id: int, digest: str) -> Any:
        return self.one("SELECT b.size, rb.created_at FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest "
                        "WHERE rb.repository_id = ? AND rb.digest = ?", (repository_id, digest))
