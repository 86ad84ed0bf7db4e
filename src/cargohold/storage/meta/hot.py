"""The per-request reads, as plain SQL on SQLite's own driver.

Every /v2 request looks up its access key, its repository, the registry policy and then a
manifest or a blob link. Through SQLAlchemy Core each of those costs ~0.4 ms of Python
(expression building, pool checkout, BEGIN/COMMIT events); on sqlite3 directly it is tens of
microseconds. Same schema, same results: the metadata contract suite runs these methods on
SQLite (this path) and on PostgreSQL (the Core path in MetadataStore).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import namedtuple
from typing import Any

_JSON_COLUMNS = frozenset({"mutability_exclusions", "encryption", "resource_tags", "annotations"})
_ROW_TYPES: dict[tuple[str, ...], Any] = {}


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Any:
    fields = tuple(d[0] for d in cursor.description)
    cls = _ROW_TYPES.get(fields)
    if cls is None:
        cls = _ROW_TYPES[fields] = namedtuple("Row", fields)
    return cls(*(json.loads(v) if f in _JSON_COLUMNS and isinstance(v, str) else v
                 for f, v in zip(fields, values, strict=True)))


MANIFEST_COLUMNS = ("m.digest, m.media_type, m.artifact_type, m.subject_digest, m.config_digest, m.size, "
                    "m.image_size, m.annotations, m.pushed_at, m.last_pulled_at")


class SqliteHotReads:
    """Read-only statements on one sqlite3 connection per thread (autocommit: one snapshot each)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.row_factory = _row
            self._local.conn = conn
        return conn

    def one(self, sql: str, params: tuple[Any, ...]) -> Any:
        return self._conn().execute(sql, params).fetchone()

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
