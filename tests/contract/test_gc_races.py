"""The collector's metadata transactions against the writes they race with, on SQLite and PostgreSQL.

Each test pauses one transaction at a chosen point (a statement it executes, or a callback it makes
inside the transaction), starts the other operation in a second thread, checks that it waits, lets
the first finish, and then checks the outcome and the store's invariants: every blob a manifest
references is linked in its repository, every link has a blob row, every blob row has its file.

SQLite serializes writers (BEGIN IMMEDIATE), so the second operation waits for the write lock.
PostgreSQL runs READ COMMITTED: there the outcome depends on row locks and on which snapshot each
statement sees. Two of these races lost blobs there before the store was fixed: drop_links
deleting a link that a concurrent manifest PUT (holding it FOR SHARE) had just referenced, and
remove_unrecorded trashing a stray file that a concurrent commit_blob had just adopted.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, event, select

from cargohold.errors import Kind, RegistryError
from cargohold.storage.blobs.fs import FilesystemBlobStore
from cargohold.storage.meta import schema as s
from cargohold.storage.meta.store import MetadataStore, NewManifest

ACCOUNT = "000000000000"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OLD, CUTOFF, NOW = 1_000, 5_000, 10_000  # ms: links and blobs created at OLD are past the grace window

pytestmark = pytest.mark.timeout(60)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Stores:
    meta: MetadataStore
    blobs: FilesystemBlobStore
    repo: int
    other: int

    def stage(self, data: bytes) -> str:
        upload_id = os.urandom(8).hex()
        self.blobs.start_upload(upload_id)
        writer = self.blobs.upload_writer(upload_id, 0)
        writer.write(data)
        writer.close()
        self.blobs.prepare(upload_id)
        return upload_id

    def commit(self, repo: int, data: bytes, now: int, place: Callable[[], None] | None = None) -> str:
        d = sha256(data)
        upload_id = self.stage(data)
        self.meta.commit_blob(repo, d, len(data), now, place or (lambda: self.blobs.place(upload_id, d)))
        return d

    def read(self, d: str) -> bytes:
        return b"".join(self.blobs.read(d))

    def check_invariants(self) -> None:
        rb, r = s.repository_blobs, s.manifest_references
        with self.meta.read() as conn:
            refs = conn.execute(select(r.c.repository_id, r.c.child_digest).where(r.c.kind == "blob")).all()
            links = set(conn.execute(select(rb.c.repository_id, rb.c.digest)).all())
            rows = set(conn.execute(select(s.blobs.c.digest)).scalars())
        for ref in refs:
            assert (ref.repository_id, ref.child_digest) in links, f"referenced blob without a link: {ref}"
        for _, d in links:
            assert d in rows, f"link without a blob row: {d}"
        for d in rows:
            assert self.blobs.size(d) is not None, f"blob row without a file: {d}"
            assert sha256(self.read(d)) == d
        assert list(self.blobs.list_trash()) == []


@pytest.fixture()
def stores(engine: Engine, tmp_path: Path) -> Stores:
    with engine.begin() as conn:
        for table in (s.tags, s.manifest_references, s.manifests, s.repository_blobs, s.uploads, s.blobs,
                      s.repositories):
            conn.execute(delete(table))
    meta = MetadataStore(engine)
    repo = meta.create_repository(ACCOUNT, "team/app", OLD)
    other = meta.create_repository(ACCOUNT, "team/other", OLD)
    return Stores(meta, FilesystemBlobStore(tmp_path / "data"), repo.id, other.id)


class Pause:
    """Stops the first thread that reaches a point until released."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def here(self) -> None:
        if not self.reached.is_set():
            self.reached.set()
            assert self.release.wait(30)


def pause_at_statement(engine: Engine, prefix: str, pause: Pause) -> Callable[[], None]:
    """Pause the first thread whose statement starts with prefix, right after it executed. Returns
    a function that removes the hook."""

    def hook(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(prefix.upper()):
            pause.here()

    event.listen(engine, "after_cursor_execute", hook)
    return lambda: event.remove(engine, "after_cursor_execute", hook)


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None


def contend(pause: Pause, first: Callable[[], Any], second: Callable[[], Any]) -> tuple[Outcome, Outcome]:
    """Run first until it pauses, start second, check it waits, release first; both outcomes."""
    outcomes = (Outcome(), Outcome())

    def runner(fn: Callable[[], Any], out: Outcome) -> Callable[[], None]:
        def run() -> None:
            try:
                out.value = fn()
            except BaseException as exc:  # reported to the test
                out.error = exc
        return run

    a = threading.Thread(target=runner(first, outcomes[0]))
    a.start()
    assert pause.reached.wait(30), "the first operation never reached its pause point"
    b = threading.Thread(target=runner(second, outcomes[1]))
    b.start()
    time.sleep(0.3)
    waited = b.is_alive()
    pause.release.set()
    a.join(30)
    b.join(30)
    assert not a.is_alive() and not b.is_alive()
    assert waited, "the second operation did not wait for the first one's transaction"
    return outcomes


def image(stores: Stores, layer: str) -> NewManifest:
    body = f'{{"layers": ["{layer}"], "nonce": "{os.urandom(4).hex()}"}}'.encode()
    return NewManifest(digest=sha256(body), media_type=OCI_MANIFEST, artifact_type=None, subject_digest=None,
                       config_digest=None, image_size=0, annotations=None, content=body, blob_refs=[layer],
                       manifest_refs=[])


def collect_links(stores: Stores) -> int:
    return stores.meta.drop_links(stores.meta.stale_links(CUTOFF, 100), CUTOFF)


def collect_blobs(stores: Stores) -> list[str]:
    victims = stores.meta.delete_blobs(stores.meta.orphan_blobs(CUTOFF, 100), CUTOFF, stores.blobs.trash)
    for d, _ in victims:
        stores.blobs.purge(d)
    return [d for d, _ in victims]


# -- a manifest PUT against the link phase ---------------------------------------------------------


def test_manifest_put_holding_its_links_then_link_collection(stores: Stores, engine: Engine) -> None:
    """The PUT has checked its links (FOR SHARE) and is inserting the manifest when the collector
    tries to drop the old, so far unreferenced link: the link must stay."""
    layer = stores.commit(stores.repo, b"layer bytes", OLD)
    assert stores.meta.stale_links(CUTOFF, 100) == [(stores.repo, layer)]  # the collector's candidate
    new = image(stores, layer)
    pause = Pause()
    unhook = pause_at_statement(engine, "INSERT INTO manifests", pause)
    try:
        put, drop = contend(pause, lambda: stores.meta.put_manifest(stores.repo, new, None, NOW),
                            lambda: stores.meta.drop_links([(stores.repo, layer)], CUTOFF))
    finally:
        unhook()
    assert put.error is None and drop.error is None, (put.error, drop.error)
    assert drop.value == 0
    assert stores.meta.get_manifest(stores.repo, new.digest) is not None
    assert collect_blobs(stores) == []
    assert stores.read(layer) == b"layer bytes"
    stores.check_invariants()


def test_link_collection_then_manifest_put(stores: Stores, engine: Engine) -> None:
    """The collector is deleting the link when the PUT checks it: the PUT fails with
    MANIFEST_BLOB_UNKNOWN (the client pushes again) and nothing references a missing blob."""
    layer = stores.commit(stores.repo, b"layer bytes", OLD)
    new = image(stores, layer)
    pause = Pause()
    unhook = pause_at_statement(engine, "DELETE FROM repository_blobs", pause)
    try:
        drop, put = contend(pause, lambda: collect_links(stores),
                            lambda: stores.meta.put_manifest(stores.repo, new, None, NOW))
    finally:
        unhook()
    assert drop.error is None and drop.value == 1
    assert isinstance(put.error, RegistryError) and put.error.kind is Kind.MANIFEST_BLOB_UNKNOWN
    assert stores.meta.get_manifest(stores.repo, new.digest) is None
    assert collect_blobs(stores) == [layer]
    # The retried push uploads the blob again and then succeeds.
    assert stores.commit(stores.repo, b"layer bytes", NOW) == layer
    stores.meta.put_manifest(stores.repo, new, None, NOW)
    stores.check_invariants()


def test_mount_then_link_collection_of_its_source(stores: Stores, engine: Engine) -> None:
    layer = stores.commit(stores.other, b"mounted", OLD)
    pause = Pause()
    unhook = pause_at_statement(engine, "INSERT INTO repository_blobs", pause)
    try:
        mount, drop = contend(pause, lambda: stores.meta.mount_blob(stores.other, stores.repo, layer, NOW),
                              lambda: stores.meta.drop_links([(stores.other, layer)], CUTOFF))
    finally:
        unhook()
    assert mount.error is None and mount.value == len(b"mounted")
    assert drop.error is None and drop.value == 1  # the source link was old and unreferenced
    assert collect_blobs(stores) == []  # the new link keeps the blob
    stores.meta.put_manifest(stores.repo, image(stores, layer), None, NOW)
    assert stores.read(layer) == b"mounted"
    stores.check_invariants()


def test_link_collection_then_mount_of_its_source(stores: Stores, engine: Engine) -> None:
    layer = stores.commit(stores.other, b"mounted", OLD)
    pause = Pause()
    unhook = pause_at_statement(engine, "DELETE FROM repository_blobs", pause)
    try:
        drop, mount = contend(pause, lambda: collect_links(stores),
                              lambda: stores.meta.mount_blob(stores.other, stores.repo, layer, NOW))
    finally:
        unhook()
    assert drop.error is None and drop.value == 1
    assert mount.error is None and mount.value is None  # not mountable any more: the client uploads
    assert collect_blobs(stores) == [layer]
    stores.check_invariants()


# -- a new upload of the same digest against the blob phase ----------------------------------------


def test_blob_collection_then_commit_of_the_same_digest(stores: Stores) -> None:
    layer = stores.commit(stores.repo, b"again", OLD)
    assert collect_links(stores) == 1
    pause = Pause()

    def remove(d: str) -> None:
        pause.here()
        stores.blobs.trash(d)

    def sweep() -> list[str]:
        victims = stores.meta.delete_blobs([layer], CUTOFF, remove)
        for d, _ in victims:
            stores.blobs.purge(d)
        return [d for d, _ in victims]

    swept, committed = contend(pause, sweep, lambda: stores.commit(stores.repo, b"again", NOW))
    assert swept.error is None and swept.value == [layer]
    assert committed.error is None and committed.value == layer
    assert stores.read(layer) == b"again"
    stores.meta.put_manifest(stores.repo, image(stores, layer), None, NOW)
    stores.check_invariants()


def test_commit_of_the_same_digest_then_blob_collection(stores: Stores) -> None:
    layer = stores.commit(stores.repo, b"again", OLD)
    assert collect_links(stores) == 1
    upload_id = stores.stage(b"again")
    pause = Pause()

    def place() -> None:
        stores.blobs.place(upload_id, layer)
        pause.here()

    committed, swept = contend(
        pause, lambda: stores.meta.commit_blob(stores.repo, layer, 5, NOW, place),
        lambda: stores.meta.delete_blobs([layer], CUTOFF, stores.blobs.trash))
    assert committed.error is None and swept.error is None, (committed.error, swept.error)
    assert swept.value == []
    assert stores.read(layer) == b"again"
    stores.check_invariants()


# -- a stray file (bytes placed, metadata commit lost in a crash) against a new upload -----------


def put_stray(stores: Stores, data: bytes) -> str:
    d = sha256(data)
    stores.blobs.place(stores.stage(data), d)
    assert not stores.meta.blob_exists(d)
    return d


def test_stray_removal_then_commit_of_the_same_digest(stores: Stores) -> None:
    d = put_stray(stores, b"stray")
    pause = Pause()

    def remove(digest: str) -> None:
        pause.here()
        stores.blobs.trash(digest)

    def strays() -> list[str]:
        gone = stores.meta.remove_unrecorded([d], remove)
        for digest in gone:
            stores.blobs.purge(digest)
        return list(gone)

    removed, committed = contend(pause, strays, lambda: stores.commit(stores.repo, b"stray", NOW))
    assert removed.error is None and committed.error is None, (removed.error, committed.error)
    assert removed.value == [d]
    assert stores.read(d) == b"stray"
    stores.check_invariants()


def test_commit_adopting_a_stray_file_then_stray_removal(stores: Stores) -> None:
    d = put_stray(stores, b"stray")
    pause = Pause()

    def place_then_pause(upload_id: str) -> Callable[[], None]:
        def place() -> None:
            stores.blobs.place(upload_id, d)  # the file is there already: the staged copy is dropped
            pause.here()
        return place

    upload_id = stores.stage(b"stray")
    committed, removed = contend(
        pause, lambda: stores.meta.commit_blob(stores.repo, d, 5, NOW, place_then_pause(upload_id)),
        lambda: stores.meta.remove_unrecorded([d], stores.blobs.trash))
    assert committed.error is None and removed.error is None, (committed.error, removed.error)
    assert removed.value == []
    assert stores.read(d) == b"stray"
    stores.check_invariants()
