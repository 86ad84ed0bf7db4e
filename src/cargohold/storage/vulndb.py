"""The offline vulnerability database: OSV records in a SQLite index file, swapped in atomically.

Layout under <data>/vulndb/:

    CURRENT              the file name of the live index (replaced with os.replace)
    osv-<stamp>.sqlite   an index: records(id, modified, doc) + keys(ecosystem, name, id) + meta
    import.lock          held (flock) by whoever builds the next index

An import copies the live index (SQLite backup API), adds the new records in one transaction,
makes the file durable and then points CURRENT at it. Readers (scans in a running server)
open whatever CURRENT names at the start of a scan, so they never see a half-built index and
the server needs no restart; the previous index is kept one generation for readers still on it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import sqlite3
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cargohold.domain.vulns.osv import lookup_keys, normalize_ecosystem
from cargohold.domain.vulns.versions import base_ecosystem

CURRENT = "CURRENT"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, modified TEXT NOT NULL, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS keys (ecosystem TEXT NOT NULL, name TEXT NOT NULL, id TEXT NOT NULL,
                                 PRIMARY KEY (ecosystem, name, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS keys_by_id ON keys (id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def parse_time(text: str) -> datetime.datetime | None:
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


@dataclass(frozen=True)
class ImportReport:
    added: int
    withdrawn: int
    skipped: int
    total: int
    updated_at: str | None
    generation: str
    seconds: float


class Snapshot:
    """One generation of the index, open for lookups."""

    def __init__(self, conn: sqlite3.Connection | None, generation: str, updated_at: str | None) -> None:
        self._conn = conn
        self.generation = generation
        self.updated_at = updated_at
        self._cache: dict[str, dict[str, Any]] = {}

    @property
    def updated_at_ms(self) -> int | None:
        when = parse_time(self.updated_at) if self.updated_at else None
        return int(when.timestamp() * 1000) if when else None

    def lookup(self, ecosystem: str, name: str) -> list[dict[str, Any]]:
        if self._conn is None:
            return []
        ecosystems = {normalize_ecosystem(ecosystem), base_ecosystem(ecosystem)}
        marks = ",".join("?" * len(ecosystems))
        ids = [row[0] for row in self._conn.execute(
            f"SELECT DISTINCT id FROM keys WHERE name = ? AND ecosystem IN ({marks}) ORDER BY id",
            (name, *sorted(ecosystems)))]
        out = []
        for ident in ids:
            doc = self._cache.get(ident)
            if doc is None:
                row = self._conn.execute("SELECT doc FROM records WHERE id = ?", (ident,)).fetchone()
                if row is None:
                    continue
                doc = json.loads(zlib.decompress(row[0]))
                self._cache[ident] = doc
            out.append(doc)
        return out

    def count(self) -> int:
        if self._conn is None:
            return 0
        return int(self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def ecosystems(self) -> dict[str, int]:
        if self._conn is None:
            return {}
        return {row[0]: row[1] for row in self._conn.execute(
            "SELECT ecosystem, COUNT(DISTINCT id) FROM keys GROUP BY ecosystem ORDER BY ecosystem")}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class VulnIndex:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _current_name(self) -> str | None:
        try:
            name = (self.root / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        return name if name and "/" not in name and (self.root / name).exists() else None

    def generation(self) -> str | None:
        """The live index's file name: changes exactly when a new index is swapped in."""
        return self._current_name()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        name = self._current_name()
        if name is None:
            snap = Snapshot(None, "", None)
        else:
            conn = sqlite3.connect(f"file:{self.root / name}?mode=ro", uri=True, check_same_thread=False)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            snap = Snapshot(conn, name, meta.get("updated_at"))
        try:
            yield snap
        finally:
            snap.close()

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "import.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def import_records(self, records: Iterable[dict[str, Any] | None], *, replace: bool = False,
                       progress: Callable[[int], None] | None = None) -> ImportReport:
        """Build the next index from the live one (unless replace) plus `records`, then swap it in.

        None items are sources that could not be parsed (counted as skipped).
        """
        started = time.monotonic()
        with self._lock():
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
            name = f"osv-{stamp}-{uuid.uuid4().hex[:8]}.sqlite"
            building = self.root / (name + ".tmp")
            current = self._current_name()
            dst = sqlite3.connect(building)
            try:
                if current is not None and not replace:
                    src = sqlite3.connect(f"file:{self.root / current}?mode=ro", uri=True)
                    try:
                        src.backup(dst)
                    finally:
                        src.close()
                dst.execute("PRAGMA journal_mode=OFF")
                dst.execute("PRAGMA synchronous=OFF")
                dst.executescript(_SCHEMA)
                added = withdrawn = skipped = 0
                dst.execute("BEGIN")
                for done, record in enumerate(records, 1):
                    if progress is not None:
                        progress(done)
                    if record is None or not isinstance(record.get("id"), str):
                        skipped += 1
                        continue
                    ident = record["id"]
                    dst.execute("DELETE FROM keys WHERE id = ?", (ident,))
                    if record.get("withdrawn"):
                        dst.execute("DELETE FROM records WHERE id = ?", (ident,))
                        withdrawn += 1
                        continue
                    modified = str(record.get("modified") or record.get("published") or "")
                    blob = zlib.compress(json.dumps(record, separators=(",", ":")).encode(), 6)
                    dst.execute("INSERT OR REPLACE INTO records (id, modified, doc) VALUES (?, ?, ?)",
                                (ident, modified, blob))
                    dst.executemany("INSERT OR IGNORE INTO keys (ecosystem, name, id) VALUES (?, ?, ?)",
                                    [(eco, pkg, ident) for eco, pkg in lookup_keys(record)])
                    added += 1
                newest = None
                for (modified,) in dst.execute("SELECT DISTINCT modified FROM records"):
                    when = parse_time(modified)
                    if when is not None and (newest is None or when > newest):
                        newest = when
                updated_at = newest.strftime("%Y-%m-%dT%H:%M:%SZ") if newest else None
                total = int(dst.execute("SELECT COUNT(*) FROM records").fetchone()[0])
                meta = {"generation": name, "updated_at": updated_at or "", "imported_at": stamp,
                        "records": str(total)}
                dst.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(meta.items()))
                dst.execute("COMMIT")
            finally:
                dst.close()
            fd = os.open(building, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(building, self.root / name)
            pointer = self.root / (CURRENT + ".tmp")
            with open(pointer, "w") as fh:
                fh.write(name + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(pointer, self.root / CURRENT)
            dir_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._prune(keep={name, current})
        return ImportReport(added, withdrawn, skipped, total, updated_at, name, time.monotonic() - started)

    def _prune(self, keep: set[str | None]) -> None:
        for entry in self.root.iterdir():
            if entry.name.startswith("osv-") and entry.name not in keep:
                with contextlib.suppress(OSError):
                    entry.unlink()
