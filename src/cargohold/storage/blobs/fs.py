"""Filesystem BlobStore.

Layout under the data directory:

    blobs/<algorithm>/<first 2 hex>/<hex>   committed, content-addressed blobs (never modified)
    uploads/<upload id>                     staging file of one upload session
    trash/<algorithm>-<hex>                 blobs being garbage-collected (restored after a crash)

A commit fsyncs the staged file, renames it into place (or drops it when the blob already
exists) and fsyncs the directory, so the blob survives a crash once commit() returns.
Digests and upload ids reaching this module have been validated by the domain layer;
_blob_path re-checks them anyway so no other string can ever become a path.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

from cargohold.domain.digests import is_digest
from cargohold.storage.blobs.base import UploadBusy

_UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileWriter:
    def __init__(self, path: Path, offset: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._file.truncate(offset)
        self._file.seek(offset)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written or 0:]

    def close(self) -> None:
        self._file.close()


class _FileLock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the flock
            self._fd = -1


class FilesystemBlobStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self._blobs = self.root / "blobs"
        self._uploads = self.root / "uploads"
        self._trash = self.root / "trash"
        for folder in (self._blobs, self._uploads, self._trash):
            folder.mkdir(parents=True, exist_ok=True)

    def _blob_path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise ValueError("invalid digest")
        algorithm, hexdigest = digest.split(":", 1)
        return self._blobs / algorithm / hexdigest[:2] / hexdigest

    def _upload_path(self, upload_id: str) -> Path:
        if not _UPLOAD_ID_RE.fullmatch(upload_id):
            raise ValueError("invalid upload id")
        return self._uploads / upload_id

    # -- uploads ----------------------------------------------------------------------------

    def start_upload(self, upload_id: str) -> None:
        self._upload_path(upload_id).touch(exist_ok=False)

    def upload_size(self, upload_id: str) -> int | None:
        try:
            return self._upload_path(upload_id).stat().st_size
        except FileNotFoundError:
            return None

    def lock_upload(self, upload_id: str) -> _FileLock:
        fd = os.open(self._upload_path(upload_id), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UploadBusy(upload_id) from None
        return _FileLock(fd)

    def upload_writer(self, upload_id: str, offset: int) -> _FileWriter:
        return _FileWriter(self._upload_path(upload_id), offset)

    def read_upload(self, upload_id: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        with open(self._upload_path(upload_id), "rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def prepare(self, upload_id: str) -> None:
        """Make the staged bytes durable (fsync) before they are placed."""
        fd = os.open(self._upload_path(upload_id), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def place(self, upload_id: str, digest: str) -> None:
        """Rename prepared bytes into place, or drop them when the blob is already there."""
        staged = self._upload_path(upload_id)
        final = self._blob_path(digest)
        if final.exists():
            staged.unlink()
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        _fsync_dir(final.parent)

    def commit(self, upload_id: str, digest: str) -> None:
        self.prepare(upload_id)
        self.place(upload_id, digest)

    # -- garbage collection: blobs go to a trash area first, so a crash can be undone -----------

    def _trash_path(self, digest: str) -> Path:
        path = self._blob_path(digest)
        return self._trash / f"{path.parent.parent.name}-{path.name}"

    def trash(self, digest: str) -> bool:
        try:
            os.replace(self._blob_path(digest), self._trash_path(digest))
            return True
        except FileNotFoundError:
            return False

    def restore(self, digest: str) -> bool:
        final = self._blob_path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self._trash_path(digest), final)
            return True
        except FileNotFoundError:
            return False

    def list_trash(self) -> Iterator[str]:
        for entry in os.scandir(self._trash):
            algorithm, _, hexdigest = entry.name.partition("-")
            digest = f"{algorithm}:{hexdigest}"
            if is_digest(digest):
                yield digest

    def purge(self, digest: str) -> int:
        """Delete a trashed blob for good; returns the bytes freed."""
        path = self._trash_path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
            return size
        except FileNotFoundError:
            return 0

    def blob_mtime(self, digest: str) -> float | None:
        try:
            return self._blob_path(digest).stat().st_mtime
        except FileNotFoundError:
            return None

    def upload_mtime(self, upload_id: str) -> float | None:
        try:
            return self._upload_path(upload_id).stat().st_mtime
        except (FileNotFoundError, ValueError):
            return None

    def abort(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._upload_path(upload_id).unlink()

    def list_uploads(self) -> Iterator[str]:
        for entry in os.scandir(self._uploads):
            yield entry.name

    # -- blobs ------------------------------------------------------------------------------

    def size(self, digest: str) -> int | None:
        try:
            return self._blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def local_path(self, digest: str) -> str | None:
        return str(self._blob_path(digest))

    def read(self, digest: str, start: int = 0, end: int | None = None,
             chunk_size: int = 4 << 20) -> Iterator[bytes]:
        with open(self._blob_path(digest), "rb") as f:
            f.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                chunk = f.read(chunk_size if remaining is None else min(chunk_size, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def delete(self, digest: str) -> bool:
        try:
            self._blob_path(digest).unlink()
            return True
        except FileNotFoundError:
            return False

    def list_digests(self) -> Iterator[str]:
        if not self._blobs.exists():
            return
        for algorithm in os.scandir(self._blobs):
            for prefix in os.scandir(algorithm.path):
                for entry in os.scandir(prefix.path):
                    digest = f"{algorithm.name}:{entry.name}"
                    if is_digest(digest):
                        yield digest
