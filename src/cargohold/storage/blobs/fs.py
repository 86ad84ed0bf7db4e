"""Filesystem BlobStore.

Layout under the data directory:

    blobs/<algorithm>/<first 2 hex>/<hex>   committed, content-addressed blobs (never modified)
    uploads/<upload id>                     staging file of one upload session
    trash/<algorithm>-<hex>                 blobs being garbage-collected (restored after a crash)
    discard/<upload id>                     staged bytes nobody needs, deleted by a thread (reaper.py)

A commit fsyncs the staged file, renames it into place (or drops it when the blob already
exists) and fsyncs the directory, so the blob survives a crash once commit() returns.
Dropped and aborted staging files are deleted off the request path: freeing a large file
waits for the disk (see reaper.py).
Digests and upload ids reaching this module have been validated by the domain layer;
_blob_path re-checks them anyway so no other string can ever become a path.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

from cargohold.domain.digests import is_digest
from cargohold.storage.blobs.base import UploadBusy
from cargohold.storage.blobs.reaper import Reaper

_UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's sync_file_range(2), which Python does not wrap; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    func.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], func)


_sync_file_range = _load_sync_file_range()
_SFR_START = 2  # SYNC_FILE_RANGE_WRITE: start writeback, do not wait
_SFR_FLUSH = 7  # WAIT_BEFORE | WRITE | WAIT_AFTER: the range is on disk when it returns
_WINDOW = 8 << 20


class _FileWriter:
    """Appends to a staging file without letting the upload pile up in the page cache.

    Every 8 MiB window is handed to writeback as soon as it is full; the window before it is then
    waited for and dropped from the cache. Two things follow, both measured (docs/benchmarks.md):
    the closing fsync has almost nothing left to do, and the pages being written are ones just
    freed, not fresh memory (first touch of fresh pages was 5x slower than the copy itself on a
    virtual machine). The bytes are not needed in memory anyway: they were hashed on the way in.
    """

    def __init__(self, path: Path, offset: int) -> None:
        self._fd = os.open(path, os.O_WRONLY)
        os.ftruncate(self._fd, offset)
        self._pos = self._started = offset
        # What earlier chunks of this upload left in the cache is dropped with the first window
        # (by then it has been written), not here where the request would wait for it.
        self._dropped = 0

    def _flush_and_drop(self, start: int, end: int) -> None:
        if _sync_file_range is not None and end > start:
            _sync_file_range(self._fd, start, end - start, _SFR_FLUSH)
            os.posix_fadvise(self._fd, start, end - start, os.POSIX_FADV_DONTNEED)

    def write(self, *parts: bytes) -> None:
        views = [memoryview(p) for p in parts if p]
        while views:
            n = os.pwritev(self._fd, views, self._pos)
            self._pos += n
            while views and n >= len(views[0]):
                n -= len(views.pop(0))
            if n:
                views[0] = views[0][n:]
        if _sync_file_range is not None and self._pos - self._started >= _WINDOW:
            _sync_file_range(self._fd, self._started, self._pos - self._started, _SFR_START)
            self._flush_and_drop(self._dropped, self._started)
            self._dropped, self._started = self._started, self._pos

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            if _sync_file_range is not None and self._pos > self._started:
                _sync_file_range(self._fd, self._started, self._pos - self._started, _SFR_START)
        finally:
            os.close(self._fd)
            self._fd = -1


_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


class _BlobReader:
    """A committed blob, read forward; read_cached() answers from the page cache or not at all.

    Downloads call read_cached() on the event loop and go to a worker thread only when it says
    no: with 16 clients pulling one cached 64 MiB blob, the thread hop per 4 MiB cost more CPU
    than the copy itself (aggregate 1.9 -> 2.4 GB/s measured, docs/benchmarks.md). Residency is
    probed with preadv2(RWF_NOWAIT) on the first and last byte of the piece, which fails with
    EAGAIN instead of reading from the disk.
    """

    def __init__(self, path: str, start: int, end: int) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self._pos, self._end = start, end
        self._probe = bytearray(1)

    def _next_size(self, size: int) -> int:
        return max(0, min(size, self._end - self._pos))

    def _in_memory(self, offset: int, size: int) -> bool:
        global _RWF_NOWAIT
        if _RWF_NOWAIT is None:
            return False
        try:
            return all(os.preadv(self._fd, [self._probe], at, _RWF_NOWAIT) == 1
                       for at in (offset, offset + size - 1))
        except BlockingIOError:
            return False
        except OSError:  # the filesystem does not do RWF_NOWAIT: always use the thread
            _RWF_NOWAIT = None
            return False

    def read_cached(self, size: int) -> bytes | None:
        size = self._next_size(size)
        if size and not self._in_memory(self._pos, size):
            return None
        return self._take(size)

    def read(self, size: int) -> bytes:
        return self._take(self._next_size(size))

    def _take(self, size: int) -> bytes:
        if not size:
            return b""
        data = os.pread(self._fd, size, self._pos)
        self._pos += len(data)
        return data

    def fileno(self) -> int | None:
        return self._fd if self._fd >= 0 else None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


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
        self.reaper = Reaper(self.root / "discard")
        for folder in (self._blobs, self._uploads, self._trash, self.reaper.folder):
            folder.mkdir(parents=True, exist_ok=True)
        self.reaper.sweep()

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
            self.reaper.take(staged, upload_id)
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
        self.reaper.take(self._upload_path(upload_id), upload_id)

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

    def open_blob(self, digest: str, start: int, end: int) -> _BlobReader:
        return _BlobReader(str(self._blob_path(digest)), start, end)

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
