"""The BlobStore interface: content-addressed bytes plus staging areas for uploads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class UploadWriter(Protocol):
    def write(self, *parts: bytes) -> None:
        """Append the parts, in order."""

    def close(self) -> None: ...


class BlobReader(Protocol):
    """An open blob, read forward from a start offset up to an end offset."""

    def read(self, size: int) -> bytes:
        """Up to `size` next bytes (b"" at the end); may wait for the disk."""

    def read_cached(self, size: int) -> bytes | None:
        """Like read() when the bytes are already in memory, else None (nothing consumed):
        cheap enough to call on an event loop, since it never waits for a disk."""

    def fileno(self) -> int | None:
        """A descriptor of the blob's file, for sendfile(2); None when the store has no files."""

    def close(self) -> None: ...


class UploadBusy(Exception):
    """Another request (in any process) holds the upload's staging area."""


class UploadLock(Protocol):
    def close(self) -> None: ...


class BlobStore(Protocol):
    """Staged uploads are addressed by an already-validated upload id, blobs by a validated digest."""

    def start_upload(self, upload_id: str) -> None: ...

    def upload_size(self, upload_id: str) -> int | None:
        """Bytes staged so far, or None if there is no such staging area."""

    def lock_upload(self, upload_id: str) -> UploadLock:
        """Hold the staging area exclusively across processes until close(); UploadBusy if held,
        FileNotFoundError if there is no such staging area."""

    def upload_writer(self, upload_id: str, offset: int) -> UploadWriter:
        """A writer appending at offset (anything staged past offset is discarded)."""

    def read_upload(self, upload_id: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    def prepare(self, upload_id: str) -> None:
        """Make the staged bytes durable before they are placed."""

    def place(self, upload_id: str, digest: str) -> None:
        """Move prepared bytes into place as blob `digest` (or drop them if it exists)."""

    def commit(self, upload_id: str, digest: str) -> None:
        """prepare() then place()."""

    def trash(self, digest: str) -> bool:
        """Move a blob aside for deletion (undoable with restore())."""

    def restore(self, digest: str) -> bool: ...

    def list_trash(self) -> Iterator[str]: ...

    def purge(self, digest: str) -> int:
        """Delete a trashed blob for good; returns bytes freed."""

    def blob_mtime(self, digest: str) -> float | None: ...

    def upload_mtime(self, upload_id: str) -> float | None: ...

    def abort(self, upload_id: str) -> None: ...

    def size(self, digest: str) -> int | None: ...

    def local_path(self, digest: str) -> str | None:
        """The blob's filesystem path, when the store has one (for tools and tests)."""

    def read(self, digest: str, start: int = 0, end: int | None = None,
             chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Bytes [start, end) of a blob (end exclusive, None = to the end)."""

    def open_blob(self, digest: str, start: int, end: int) -> BlobReader:
        """A reader of bytes [start, end) of a blob; FileNotFoundError when it is not there."""

    def delete(self, digest: str) -> bool: ...

    def list_digests(self) -> Iterator[str]: ...

    def list_uploads(self) -> Iterator[str]: ...
