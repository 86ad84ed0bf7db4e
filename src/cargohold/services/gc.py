"""Online garbage collection: unreferenced blobs go after a grace window, while the registry runs.

Safety argument (filesystem store): blob rows are created and blob bytes placed in one metadata
write transaction (MetadataStore.commit_blob); the collector re-checks and deletes in a write
transaction too, moving bytes to a trash area inside it. So a push either refreshed the blob
before the collector looked (and it is spared) or runs after it (and puts fresh bytes in place).
A manifest PUT re-checks its references in its own write transaction: if a link was collected
first, the PUT fails with MANIFEST_BLOB_UNKNOWN and a retried push uploads the blob again.
A crash mid-sweep leaves blobs in the trash; reconcile() restores those still recorded.

"Write transactions serialize" is literal on SQLite (BEGIN IMMEDIATE). On PostgreSQL (READ
COMMITTED) it holds only because each racing pair meets on a locked row, or on the blobs table
lock in remove_unrecorded, and each re-check is a statement started after that wait.
A push that skips an upload after a HEAD refreshes nothing, and a link's grace window counts
from its upload, not from when its last manifest was deleted: such a push is protected only by
the manifest PUT's re-check, and its client has to push again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cargohold.storage.blobs.base import BlobStore
from cargohold.storage.meta.store import MetadataStore

Progress = Callable[[str, int], None]  # (phase, items done in this phase)


@dataclass
class GcReport:
    links_dropped: int = 0
    blobs_deleted: int = 0
    bytes_freed: int = 0
    uploads_purged: int = 0
    stray_files_deleted: int = 0
    restored: int = 0
    seconds: float = 0.0
    deleted: list[str] = field(default_factory=list)


class GarbageCollector:
    def __init__(self, meta: MetadataStore, blobs: BlobStore, *, grace_seconds: float, upload_max_age: float,
                 clock: Callable[[], float] = time.time, lock_path: Path | None = None) -> None:
        self.meta = meta
        self.blobs = blobs
        self.grace_seconds = grace_seconds
        self.upload_max_age = upload_max_age
        self.clock = clock
        self.lock_path = lock_path

    @contextlib.contextmanager
    def exclusive(self, wait: bool = True) -> Iterator[bool]:
        """One collector at a time per data directory (worker processes and CLI runs alike)."""
        if self.lock_path is None:
            yield True
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def reconcile(self) -> int:
        """Undo an interrupted sweep: trashed blobs still recorded go back, the rest are purged."""
        restored = 0
        for digest in list(self.blobs.list_trash()):
            if self.meta.blob_exists(digest):
                restored += int(self.blobs.restore(digest))
            else:
                self.blobs.purge(digest)
        return restored

    def run(self, progress: Progress | None = None, batch: int = 500) -> GcReport:
        started = time.monotonic()
        report = GcReport()
        note = progress or (lambda phase, n: None)
        report.restored = self.reconcile()
        now = self.clock()
        cutoff = int((now - self.grace_seconds) * 1000)

        while links := self.meta.stale_links(cutoff, batch):
            dropped = self.meta.drop_links(links, cutoff)
            report.links_dropped += dropped
            note("links", report.links_dropped)
            if dropped == 0:
                break

        while orphans := self.meta.orphan_blobs(cutoff, batch):
            victims = self.meta.delete_blobs(orphans, cutoff, self.blobs.trash)
            for digest, _ in victims:
                report.bytes_freed += self.blobs.purge(digest)
                report.deleted.append(digest)
            report.blobs_deleted += len(victims)
            note("blobs", report.blobs_deleted)
            if not victims:
                break

        stale = self.meta.stale_uploads(int((now - self.upload_max_age) * 1000))
        for upload_id in stale:
            self.blobs.abort(upload_id)
        report.uploads_purged = self.meta.purge_uploads(stale)
        note("uploads", report.uploads_purged)

        report.stray_files_deleted = self._strays(now)
        report.seconds = time.monotonic() - started
        return report

    def _strays(self, now: float) -> int:
        """Files with no metadata row, left by crashes: staging files and blob files past the grace window."""
        deleted = 0
        # Files first, rows second: a session's row is written before its file, so a file listed
        # here whose row is missing afterwards really has none (reading the rows first would miss
        # a session started in between, whatever the grace window).
        staged = list(self.blobs.list_uploads())
        known = self.meta.upload_ids()
        for upload_id in staged:
            mtime = self.blobs.upload_mtime(upload_id)
            if upload_id not in known and mtime is not None and mtime < now - self.grace_seconds:
                self.blobs.abort(upload_id)
                deleted += 1
        old: list[str] = []
        for digest in self.blobs.list_digests():
            mtime = self.blobs.blob_mtime(digest)
            if mtime is not None and mtime < now - self.grace_seconds:
                old.append(digest)
            if len(old) >= 500:
                deleted += self._drop_unrecorded(old)
                old = []
        return deleted + self._drop_unrecorded(old)

    def _drop_unrecorded(self, digests: list[str]) -> int:
        if not digests:
            return 0
        unrecorded = [d for d in digests if not self.meta.blob_exists(d)]
        gone = self.meta.remove_unrecorded(unrecorded, self.blobs.trash)
        for digest in gone:
            self.blobs.purge(digest)
        return len(gone)
