"""The filesystem store deletes dropped and aborted staging files off the request path.

Freeing a large file waits for the disk; the last close of the file used to be the upload's
hold, closed on the event loop. These tests pin who does the freeing: the reaper thread, only
after every hold on the file is released, and a restart finishes what a crash left behind.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cargohold.storage.blobs import reaper
from cargohold.storage.blobs.fs import FilesystemBlobStore

UPLOAD = "upload-0123456789abcdef"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _stage(store: FilesystemBlobStore, upload_id: str, data: bytes) -> None:
    store.start_upload(upload_id)
    writer = store.upload_writer(upload_id, 0)
    writer.write(data)
    writer.close()


def _discarded(store: FilesystemBlobStore) -> list[str]:
    return sorted(os.listdir(store.reaper.folder))


def test_a_duplicate_is_freed_by_the_reaper_once_the_hold_is_released(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    data = os.urandom(3 << 20)
    digest = _digest(data)
    _stage(store, "upload-aaaaaaaaaaaaaaaa", data)
    store.commit("upload-aaaaaaaaaaaaaaaa", digest)
    _stage(store, UPLOAD, data)
    hold = store.lock_upload(UPLOAD)
    store.commit(UPLOAD, digest)  # the blob exists: the staged copy is dropped
    assert store.upload_size(UPLOAD) is None
    assert not store.reaper.drain(timeout=0.3), "deleted while a request still held the upload"
    assert _discarded(store) == [UPLOAD]
    hold.close()  # what the request does last; the file is still linked, so this frees nothing
    assert store.reaper.drain(timeout=10)
    assert _discarded(store) == []
    assert b"".join(store.read(digest)) == data


def test_abort_moves_the_staged_bytes_aside_and_deletes_them(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    _stage(store, UPLOAD, b"x" * (2 << 20))
    store.abort(UPLOAD)
    assert store.upload_size(UPLOAD) is None
    assert list(store.list_uploads()) == []
    assert store.reaper.drain(timeout=10)
    assert _discarded(store) == []
    store.abort(UPLOAD)  # twice: nothing there, nothing raised
    store.abort("upload-fedcba9876543210")


def test_a_small_staged_file_is_deleted_at_once(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    _stage(store, UPLOAD, b"z" * 1000)
    store.abort(UPLOAD)
    assert _discarded(store) == []  # nothing passes through the folder, not even briefly
    assert store.upload_size(UPLOAD) is None


def test_a_restart_deletes_what_a_crash_left_to_discard(tmp_path: Path) -> None:
    folder = tmp_path / "discard"
    folder.mkdir(parents=True)
    (folder / UPLOAD).write_bytes(b"y" * 4096)
    store = FilesystemBlobStore(tmp_path)
    assert store.reaper.drain(timeout=10)
    assert _discarded(store) == []


def test_delete_frees_a_file_in_steps_and_tolerates_a_vanished_one(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(os.urandom(1 << 20))
    reaper.delete(str(path), step=100_000)  # eleven truncations, then the unlink
    assert not path.exists()
    reaper.delete(str(path))  # gone already (another process's reaper): no error
