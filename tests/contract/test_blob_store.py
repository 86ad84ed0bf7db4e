"""BlobStore contract: every implementation behaves the same way.

Implementations are listed in STORES; each factory gets a private temporary directory. An S3
store can be added there (e.g. against a local S3-compatible server) without touching the tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cargohold.storage.blobs.base import BlobStore
from cargohold.storage.blobs.fs import FilesystemBlobStore


def _filesystem(tmp: Path) -> BlobStore:
    return FilesystemBlobStore(tmp / "outer" / "root")


STORES: dict[str, Callable[[Path], BlobStore]] = {
    "fs": _filesystem,
}

UPLOAD = "upload-0123456789abcdef"
OTHER_UPLOAD = "upload-fedcba9876543210"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


@pytest.fixture(params=sorted(STORES))
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return STORES[request.param](tmp_path)


def write(store: BlobStore, upload_id: str, offset: int, *parts: bytes) -> None:
    writer = store.upload_writer(upload_id, offset)
    try:
        for part in parts:
            writer.write(part)
    finally:
        writer.close()


def staged(store: BlobStore, upload_id: str) -> bytes:
    return b"".join(store.read_upload(upload_id))


def read(store: BlobStore, digest: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20) -> bytes:
    return b"".join(store.read(digest, start, end, chunk_size))


def put_blob(store: BlobStore, data: bytes, upload_id: str = UPLOAD) -> str:
    digest = sha256(data)
    store.start_upload(upload_id)
    write(store, upload_id, 0, data)
    store.commit(upload_id, digest)
    return digest


# -- uploads ----------------------------------------------------------------------------------


def test_start_upload_is_empty(blobs: BlobStore) -> None:
    assert blobs.upload_size(UPLOAD) is None
    blobs.start_upload(UPLOAD)
    assert blobs.upload_size(UPLOAD) == 0
    assert staged(blobs, UPLOAD) == b""
    assert list(blobs.list_uploads()) == [UPLOAD]


def test_append_chunks(blobs: BlobStore) -> None:
    blobs.start_upload(UPLOAD)
    write(blobs, UPLOAD, 0, b"hello")
    assert blobs.upload_size(UPLOAD) == 5
    write(blobs, UPLOAD, 5, b" ", b"wor", b"ld")  # several writes through one writer
    assert blobs.upload_size(UPLOAD) == 11
    assert staged(blobs, UPLOAD) == b"hello world"
    write(blobs, UPLOAD, 11, b"")  # an empty chunk changes nothing
    assert staged(blobs, UPLOAD) == b"hello world"


def test_writer_at_offset_discards_bytes_past_it(blobs: BlobStore) -> None:
    blobs.start_upload(UPLOAD)
    write(blobs, UPLOAD, 0, b"0123456789")
    write(blobs, UPLOAD, 4, b"ab")  # a retried chunk: everything staged past offset 4 is dropped
    assert staged(blobs, UPLOAD) == b"0123ab"
    assert blobs.upload_size(UPLOAD) == 6
    write(blobs, UPLOAD, 2)  # a writer closed without writing still truncates
    assert staged(blobs, UPLOAD) == b"01"
    write(blobs, UPLOAD, 0, b"xyz")
    assert staged(blobs, UPLOAD) == b"xyz"


def test_read_upload_in_chunks(blobs: BlobStore) -> None:
    data = os.urandom(300_000)
    blobs.start_upload(UPLOAD)
    write(blobs, UPLOAD, 0, data[:123_457], data[123_457:])
    chunks = list(blobs.read_upload(UPLOAD, chunk_size=65_536))
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= 65_536 for c in chunks)
    assert len(chunks) >= 5


def test_uploads_are_independent(blobs: BlobStore) -> None:
    blobs.start_upload(UPLOAD)
    blobs.start_upload(OTHER_UPLOAD)
    write(blobs, UPLOAD, 0, b"one")
    write(blobs, OTHER_UPLOAD, 0, b"other")
    assert staged(blobs, UPLOAD) == b"one"
    assert staged(blobs, OTHER_UPLOAD) == b"other"
    assert sorted(blobs.list_uploads()) == sorted([UPLOAD, OTHER_UPLOAD])
    assert list(blobs.list_digests()) == []


def test_commit(blobs: BlobStore) -> None:
    data = b"layer bytes" * 1000
    digest = sha256(data)
    blobs.start_upload(UPLOAD)
    write(blobs, UPLOAD, 0, data)
    assert blobs.size(digest) is None
    blobs.commit(UPLOAD, digest)

    assert blobs.size(digest) == len(data)
    assert read(blobs, digest) == data
    assert blobs.upload_size(UPLOAD) is None  # the staging area is gone
    assert list(blobs.list_uploads()) == []
    assert list(blobs.list_digests()) == [digest]


def test_commit_existing_digest_drops_staged_copy(blobs: BlobStore) -> None:
    data = b"the same content"
    digest = put_blob(blobs, data)
    blobs.start_upload(OTHER_UPLOAD)
    write(blobs, OTHER_UPLOAD, 0, data)
    blobs.commit(OTHER_UPLOAD, digest)
    assert blobs.upload_size(OTHER_UPLOAD) is None
    assert list(blobs.list_uploads()) == []
    assert list(blobs.list_digests()) == [digest]
    assert read(blobs, digest) == data


def test_commit_empty_blob(blobs: BlobStore) -> None:
    digest = put_blob(blobs, b"")
    assert blobs.size(digest) == 0
    assert read(blobs, digest) == b""


def test_abort(blobs: BlobStore) -> None:
    blobs.start_upload(UPLOAD)
    write(blobs, UPLOAD, 0, b"partial")
    blobs.abort(UPLOAD)
    assert blobs.upload_size(UPLOAD) is None
    assert list(blobs.list_uploads()) == []
    assert list(blobs.list_digests()) == []
    blobs.abort(UPLOAD)  # aborting twice, or an unknown upload, is fine
    blobs.abort(OTHER_UPLOAD)
    blobs.start_upload(UPLOAD)  # the id can start afresh
    assert blobs.upload_size(UPLOAD) == 0


# -- blobs ------------------------------------------------------------------------------------


def test_size_of_unknown_blob(blobs: BlobStore) -> None:
    assert blobs.size(sha256(b"nothing")) is None


def test_read_ranges(blobs: BlobStore) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    digest = put_blob(blobs, data)
    assert read(blobs, digest) == data
    assert read(blobs, digest, 100) == data[100:]
    assert read(blobs, digest, 100, 200) == data[100:200]
    assert read(blobs, digest, 0, 1) == data[:1]
    assert read(blobs, digest, len(data) - 1) == data[-1:]
    assert read(blobs, digest, 5, 5) == b""
    assert read(blobs, digest, 10_000, 99_999) == data[10_000:]  # end past the blob: up to its end
    assert read(blobs, digest, len(data)) == b""
    chunks = list(blobs.read(digest, 10, 5010, chunk_size=1000))
    assert b"".join(chunks) == data[10:5010]
    assert all(0 < len(c) <= 1000 for c in chunks)


def test_local_path(blobs: BlobStore) -> None:
    data = b"zero copy"
    digest = put_blob(blobs, data)
    path = blobs.local_path(digest)
    if path is not None:  # optional: only stores with files have one
        assert Path(path).read_bytes() == data


def test_delete(blobs: BlobStore) -> None:
    keep = put_blob(blobs, b"keep")
    doomed = put_blob(blobs, b"doomed", OTHER_UPLOAD)
    assert blobs.delete(doomed) is True
    assert blobs.delete(doomed) is False
    assert blobs.size(doomed) is None
    assert list(blobs.list_digests()) == [keep]
    assert read(blobs, keep) == b"keep"
    assert blobs.delete(sha256(b"never stored")) is False


def test_list_digests(blobs: BlobStore) -> None:
    digests = {put_blob(blobs, f"blob {i}".encode(), f"upload-{i:016d}") for i in range(20)}
    big = b"sha512 content"
    blobs.start_upload(UPLOAD)
    write(blobs, UPLOAD, 0, big)
    blobs.commit(UPLOAD, sha512(big))
    digests.add(sha512(big))
    listed = list(blobs.list_digests())
    assert len(listed) == len(set(listed)) == 21
    assert set(listed) == digests
    assert blobs.size(sha512(big)) == len(big)


# -- hostile names ----------------------------------------------------------------------------

BAD_DIGESTS = [
    "", "sha256", "sha256:", "../../../evil", "sha256:../../../evil", "sha256:abc",
    "sha256:" + "A" * 64, "sha256:" + "0" * 63, "sha256:" + "0" * 65, "sha256:" + "0" * 62 + "/x",
    "sha256:" + "0" * 64 + "/../../evil", "md5:" + "0" * 32, "sha512:" + "0" * 64, "/etc/passwd",
    "sha256:" + "0" * 64 + "\x00", "sha256/" + "0" * 64,
]
BAD_UPLOAD_IDS = [
    "", ".", "..", "../evil", "../../../evil-0123456789", "a" * 15, "a" * 65, "/tmp/evil-0123456789",
    "evil/../0123456789abcdef", "upload.0123456789abcdef", "upload-0123456789abcdef\x00",
    "upload 0123456789abcdef", "upload-0123456789abcdef\n",
]


def _snapshot(root: Path) -> set[tuple[str, int]]:
    return {(str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*")}


@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_rejects_invalid_digests(blobs: BlobStore, tmp_path: Path, bad: str) -> None:
    blobs.start_upload(UPLOAD)
    write(blobs, UPLOAD, 0, b"staged")
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError):
        blobs.size(bad)
    with pytest.raises(ValueError):
        b"".join(blobs.read(bad))
    with pytest.raises(ValueError):
        blobs.delete(bad)
    with pytest.raises(ValueError):
        blobs.commit(UPLOAD, bad)
    path: str | None = None
    with contextlib.suppress(ValueError):
        path = blobs.local_path(bad)
    assert path is None
    assert _snapshot(tmp_path) == before  # nothing created, moved or removed anywhere
    assert staged(blobs, UPLOAD) == b"staged"  # a rejected commit leaves the upload alone


@pytest.mark.parametrize("bad", BAD_UPLOAD_IDS)
def test_rejects_invalid_upload_ids(blobs: BlobStore, tmp_path: Path, bad: str) -> None:
    digest = put_blob(blobs, b"existing")
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError):
        blobs.start_upload(bad)
    with pytest.raises(ValueError):
        blobs.upload_size(bad)
    with pytest.raises(ValueError):
        blobs.upload_writer(bad, 0)
    with pytest.raises(ValueError):
        b"".join(blobs.read_upload(bad))
    with pytest.raises(ValueError):
        blobs.commit(bad, digest)
    with pytest.raises(ValueError):
        blobs.abort(bad)
    assert _snapshot(tmp_path) == before
    assert read(blobs, digest) == b"existing"


# -- large appends: several parts per write, across the writer's writeback windows ------------------


def test_writer_keeps_order_across_windows_and_resumes(blobs: BlobStore) -> None:
    """Parts of odd sizes spanning several 8 MiB writeback windows land in order, and a second
    writer resuming at an offset (a later PATCH) continues exactly there."""
    first = [os.urandom(n) for n in (3 << 20, 5 << 20 | 17, 1, 9 << 20, 123)]
    second = [os.urandom(n) for n in (7 << 20, 11)]
    blobs.start_upload(UPLOAD)
    writer = blobs.upload_writer(UPLOAD, 0)
    try:
        writer.write(*first[:2])
        writer.write(*first[2:])
    finally:
        writer.close()
    offset = sum(map(len, first))
    assert blobs.upload_size(UPLOAD) == offset
    write(blobs, UPLOAD, offset, *second)
    data = b"".join(first + second)
    assert staged(blobs, UPLOAD) == data
    blobs.commit(UPLOAD, sha256(data))
    assert read(blobs, sha256(data)) == data


def test_writer_at_an_earlier_offset_discards_what_follows(blobs: BlobStore) -> None:
    blobs.start_upload(UPLOAD)
    write(blobs, UPLOAD, 0, b"a" * (9 << 20))
    write(blobs, UPLOAD, 4, b"bc", b"", b"d")
    assert staged(blobs, UPLOAD) == b"aaaabcd"


# -- readers: what downloads use ------------------------------------------------------------------


def _drain(reader: Any, size: int, cached: bool) -> bytes:
    out = b""
    while True:
        piece = reader.read_cached(size) if cached else reader.read(size)
        if piece is None:
            piece = reader.read(size)
        if not piece:
            return out
        out += piece


def test_reader_reads_a_range_in_pieces(blobs: BlobStore) -> None:
    data = os.urandom((1 << 20) + 123)
    digest = put_blob(blobs, data)
    for start, end in ((0, len(data)), (5, 6), (1000, (1 << 20) + 7), (len(data) - 1, len(data))):
        for cached in (True, False):
            reader = blobs.open_blob(digest, start, end)
            try:
                assert _drain(reader, 64 << 10, cached) == data[start:end]
            finally:
                reader.close()


def test_reader_of_a_missing_blob_raises(blobs: BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        blobs.open_blob(sha256(b"never stored"), 0, 10)


def test_read_cached_declines_what_is_only_on_disk(tmp_path: Path) -> None:
    """Filesystem store: a piece the page cache does not hold is refused (None, nothing consumed)
    instead of read, so the event loop never waits for the disk; read() then gets it."""
    store = FilesystemBlobStore(tmp_path)
    data = os.urandom(4 << 20)
    digest = put_blob(store, data)
    path = store.local_path(digest)
    assert path is not None
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # clean pages: dropped from the cache
    finally:
        os.close(fd)
    reader = store.open_blob(digest, 0, len(data))
    try:
        first = reader.read_cached(1 << 20)
        if first is not None:  # a filesystem without RWF_NOWAIT or that kept the pages: still right
            assert first == data[: 1 << 20]
            return
        assert reader.read(1 << 20) == data[: 1 << 20]  # nothing was consumed by the refusal
        assert reader.read_cached(1 << 20) in (None, data[1 << 20: 2 << 20])
    finally:
        reader.close()
    reader = store.open_blob(digest, 0, len(data))
    try:
        assert _drain(reader, 1 << 20, cached=True) == data  # cached again after the first read
    finally:
        reader.close()


def test_read_cached_without_rwf_nowait_always_defers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cargohold.storage.blobs import fs

    monkeypatch.setattr(fs, "_RWF_NOWAIT", None)
    store = FilesystemBlobStore(tmp_path)
    data = os.urandom(1000)
    reader = store.open_blob(put_blob(store, data), 0, len(data))
    try:
        assert reader.read_cached(100) is None
        assert _drain(reader, 100, cached=True) == data
    finally:
        reader.close()
