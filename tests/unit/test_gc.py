"""The online garbage collector against real stores: a filesystem blob store and SQLite metadata in
tmp_path, driven by a controllable clock.

What is checked: the grace window; reachability (image manifests, indexes and their children,
referrers and their blobs, blobs shared between images and repositories); exactly what a deleted
manifest frees; the trash area after an interrupted sweep; abandoned upload sessions and stray files;
the race between a sweep and a new upload of the same digest, in both orders (sequentially and with
the two transactions really contending for SQLite's write lock); and that deleting everything and
collecting leaves no bytes behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cargohold.app import Services, build_services
from cargohold.config import Config
from cargohold.errors import Kind, RegistryError
from cargohold.services.gc import GcReport
from cargohold.services.identity import Principal, RequestContext, root_arn
from cargohold.services.repositories import Caller
from cargohold.storage.blobs.fs import FilesystemBlobStore
from cargohold.storage.meta import schema as s
from cargohold.storage.meta.store import MetadataStore

GRACE = 600.0
UPLOAD_MAX_AGE = 3600.0
ACCOUNT = "000000000000"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

pytestmark = pytest.mark.timeout(60)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Clock:
    """Wall-clock based (file mtimes are real), moved forward by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Image:
    repo: str
    digest: str
    body: bytes
    blobs: dict[str, int]  # digest -> size, config first
    config: str

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": OCI_MANIFEST, "digest": self.digest, "size": len(self.body)}


@dataclass
class Registry:
    services: Services
    clock: Clock
    caller: Caller
    root: Path

    @property
    def meta(self) -> MetadataStore:
        return self.services.meta

    @property
    def blobs(self) -> FilesystemBlobStore:
        return self.services.blobs

    # -- pushing, the way the HTTP layer does it ----------------------------------------------

    def upload(self, repo: str, data: bytes) -> str:
        d = sha256(data)

        async def body() -> AsyncIterator[bytes]:
            yield data

        size = asyncio.run(self.services.uploads.monolithic(self.caller, repo, d, body()))
        assert size == len(data)
        return d

    def put(self, repo: str, doc: dict[str, Any], media_type: str = OCI_MANIFEST, tag: str | None = None) -> str:
        body = json.dumps(doc).encode()
        result = self.services.content.put_manifest(self.caller, repo, tag or sha256(body), body, media_type)
        return result.digest

    def image(self, repo: str, layers: list[bytes], *, subject: dict[str, Any] | None = None,
              artifact_type: str | None = None) -> Image:
        """Upload a config and the layers, then the manifest (by digest)."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": uuid.uuid4().hex}).encode()
        config_type = OCI_CONFIG
        if artifact_type is not None:
            config, config_type = b"{}", OCI_EMPTY
        sizes = {self.upload(repo, data): len(data) for data in [config, *layers]}
        doc: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": config_type, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)} for layer in layers],
        }
        if artifact_type is not None:
            doc["artifactType"] = artifact_type
        if subject is not None:
            doc["subject"] = subject
        body = json.dumps(doc).encode()
        return Image(repo, self.put(repo, doc), body, sizes, sha256(config))

    def delete(self, repo: str, digest: str) -> None:
        self.services.content.delete_manifest(self.caller, repo, digest)

    # -- looking -------------------------------------------------------------------------------

    def repo_id(self, name: str) -> int:
        repo = self.meta.get_repository(ACCOUNT, name)
        assert repo is not None
        return int(repo.id)

    def read(self, digest: str) -> bytes:
        return b"".join(self.blobs.read(digest))

    def pull(self, repo: str, digest: str) -> bytes:
        """A blob as a client pulls it: the link must exist and the file must hold the bytes."""
        info = self.services.content.blob(self.caller, repo, digest)
        reader = self.blobs.open_blob(digest, 0, info.size)
        try:
            data = reader.read(info.size + 1)
        finally:
            reader.close()
        assert len(data) == info.size and sha256(data) == digest
        return data

    def has_row(self, digest: str) -> bool:
        return self.meta.blob_exists(digest)

    def has_link(self, repo: str, digest: str) -> bool:
        return self.meta.repository_blob_size(self.repo_id(repo), digest) is not None

    def has_file(self, digest: str) -> bool:
        return self.blobs.size(digest) is not None

    def gone(self, repo: str, digest: str) -> bool:
        return not self.has_row(digest) and not self.has_link(repo, digest) and not self.has_file(digest)

    def intact(self, repo: str, digest: str) -> bool:
        self.pull(repo, digest)
        return self.has_row(digest)

    def trash(self) -> list[str]:
        return sorted(self.blobs.list_trash())

    def disk_bytes(self, *folders: str) -> int:
        total = 0
        for folder in folders:
            for dirpath, _dirs, files in os.walk(self.root / folder):
                total += sum((Path(dirpath) / name).stat().st_size for name in files)
        return total

    def collect(self, after: float = GRACE + 1) -> GcReport:
        self.clock.advance(after)
        report = self.services.gc.run()
        assert self.trash() == []  # a finished sweep leaves nothing in the trash
        return report


@pytest.fixture()
def reg(tmp_path: Path) -> Iterator[Registry]:
    clock = Clock()
    root = tmp_path / "data"
    config = Config(data_dir=str(root), account_id=ACCOUNT, gc_grace=int(GRACE), upload_max_age=int(UPLOAD_MAX_AGE),
                    gc_interval=0)
    services = build_services(config, clock=clock)
    principal = Principal(root_arn(ACCOUNT), ACCOUNT, "root", "root", ACCOUNT, "AKIATEST")
    try:
        yield Registry(services, clock, Caller(principal, RequestContext()), root.resolve())
    finally:
        services.meta.engine.dispose()


def blob(size: int = 100) -> bytes:
    return os.urandom(size)


# -- the grace window --------------------------------------------------------------------------------


def test_unreferenced_blob_survives_the_grace_window_then_goes(reg: Registry) -> None:
    data = blob(1234)
    d = reg.upload("app", data)

    report = reg.collect(after=GRACE - 5)
    assert report.blobs_deleted == 0 and report.links_dropped == 0 and report.bytes_freed == 0
    assert reg.intact("app", d)

    report = reg.collect(after=10)
    assert report.links_dropped == 1
    assert report.blobs_deleted == 1
    assert report.deleted == [d]
    assert report.bytes_freed == len(data)
    assert reg.gone("app", d)
    with pytest.raises(RegistryError) as err:
        reg.services.content.blob(reg.caller, "app", d)
    assert err.value.kind is Kind.BLOB_UNKNOWN


def test_pushing_a_blob_again_restarts_its_grace_window(reg: Registry) -> None:
    data = blob()
    d = reg.upload("app", data)
    reg.clock.advance(GRACE - 5)
    reg.upload("app", data)  # the same bytes again: row and link refreshed
    report = reg.collect(after=10)
    assert report.blobs_deleted == 0 and reg.intact("app", d)
    report = reg.collect()
    assert report.blobs_deleted == 1 and reg.gone("app", d)


def test_referenced_blobs_survive(reg: Registry) -> None:
    img = reg.image("app", [blob(300), blob(400)])
    for _ in range(3):
        report = reg.collect(after=10 * GRACE)
        assert report.blobs_deleted == 0 and report.links_dropped == 0
    for d in img.blobs:
        assert reg.intact("app", d)
    assert reg.meta.get_manifest(reg.repo_id("app"), img.digest) is not None


def test_deleting_a_manifest_frees_exactly_its_unshared_blobs(reg: Registry) -> None:
    shared = blob(500)
    first = reg.image("app", [shared, blob(600)])
    second = reg.image("app", [shared, blob(700)])
    reg.delete("app", first.digest)

    report = reg.collect(after=GRACE - 5)  # the links are younger than the grace window still
    assert report.blobs_deleted == 0
    for d in first.blobs:
        assert reg.intact("app", d)

    report = reg.collect(after=10)
    unshared = {d: size for d, size in first.blobs.items() if d not in second.blobs}
    assert len(unshared) == 2 and sha256(shared) not in unshared
    assert sorted(report.deleted) == sorted(unshared)
    assert report.blobs_deleted == 2 and report.links_dropped == 2
    assert report.bytes_freed == sum(unshared.values())
    for d in unshared:
        assert reg.gone("app", d)
    for d in second.blobs:
        assert reg.intact("app", d)

    report = reg.collect()  # nothing more to find
    assert report.blobs_deleted == 0 and report.links_dropped == 0


def test_a_blob_shared_by_repositories_lives_while_one_references_it(reg: Registry) -> None:
    shared = blob(800)
    in_a = reg.image("ra", [shared])
    in_b = reg.image("rb", [shared])
    # c gets the layer by a cross-repository mount, not an upload.
    assert reg.services.uploads.mount(reg.caller, "rc", sha256(shared), "rb") == len(shared)
    in_c_config = reg.upload("rc", b'{"c": 1}')
    reg.put("rc", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                  "config": {"mediaType": OCI_CONFIG, "digest": in_c_config, "size": 8},
                  "layers": [{"mediaType": OCI_LAYER, "digest": sha256(shared), "size": len(shared)}]})
    d = sha256(shared)

    reg.delete("ra", in_a.digest)
    report = reg.collect()
    assert report.deleted == [in_a.config]
    assert not reg.has_link("ra", d)
    assert reg.intact("rb", d) and reg.intact("rc", d)

    reg.delete("rb", in_b.digest)
    report = reg.collect()
    assert report.deleted == [in_b.config]
    assert reg.intact("rc", d)

    c_manifest = reg.meta.list_manifests(reg.repo_id("rc"), None, 10)
    reg.delete("rc", c_manifest[0].digest)
    report = reg.collect()
    assert sorted(report.deleted) == sorted([d, in_c_config])
    assert report.bytes_freed == len(shared) + 8
    assert reg.gone("rc", d) and not reg.has_link("ra", d) and not reg.has_link("rb", d)


def test_index_children_and_referrers_are_reachable(reg: Registry) -> None:
    shared = blob(256)
    child1 = reg.image("multi", [blob(100), shared])
    child2 = reg.image("multi", [blob(200), shared])
    index = reg.put("multi", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                              "manifests": [child1.descriptor(), child2.descriptor()]}, OCI_INDEX, tag="latest")
    index_row = reg.meta.get_manifest(reg.repo_id("multi"), index)
    assert index_row is not None
    subject = {"mediaType": OCI_INDEX, "digest": index, "size": index_row.size}
    signature = reg.image("multi", [blob(64)], subject=subject, artifact_type="application/vnd.example.sig")
    sbom = reg.image("multi", [blob(96)], subject=child1.descriptor(), artifact_type="application/vnd.example.sbom")
    assert signature.config == sbom.config == sha256(b"{}")  # the empty config is shared

    everything = {**child1.blobs, **child2.blobs, **signature.blobs, **sbom.blobs}
    for _ in range(2):
        report = reg.collect(after=10 * GRACE)
        assert report.blobs_deleted == 0 and report.links_dropped == 0
    for d in everything:
        assert reg.intact("multi", d)
    refs = reg.services.content.referrers(reg.caller, "multi", index, None)
    assert [m["digest"] for m in refs["manifests"]] == [signature.digest]
    refs = reg.services.content.referrers(reg.caller, "multi", child1.digest, None)
    assert [m["digest"] for m in refs["manifests"]] == [sbom.digest]

    # Deleting one referrer frees its layer only: the empty config still serves the other one.
    reg.delete("multi", signature.digest)
    report = reg.collect()
    sig_layer = next(d for d in signature.blobs if d != signature.config)
    assert report.deleted == [sig_layer]
    assert reg.intact("multi", signature.config)


# -- the trash area: what an interrupted sweep leaves ----------------------------------------------


def test_reconcile_restores_a_trashed_blob_that_is_still_recorded(reg: Registry) -> None:
    img = reg.image("app", [blob(4096), blob(5000)])
    layer1, layer2 = (d for d in img.blobs if d != img.config)
    data1 = reg.read(layer1)

    assert reg.blobs.trash(layer1)  # what a sweep killed before its transaction committed leaves
    assert not reg.has_file(layer1) and reg.has_row(layer1)
    assert reg.services.gc.reconcile() == 1
    assert reg.read(layer1) == data1 and reg.intact("app", layer1)

    assert reg.blobs.trash(layer2)
    report = reg.collect(after=1)  # a run reconciles first
    assert report.restored == 1 and report.blobs_deleted == 0
    for d in img.blobs:
        assert reg.intact("app", d)


def test_a_sweep_failing_mid_transaction_is_rolled_back_and_undone(reg: Registry) -> None:
    """The collector dies after trashing some files inside its transaction: the rows stay, the
    files are in the trash, and reconcile puts them back before anything else happens."""
    datas = [blob(300 + i) for i in range(3)]
    digests = [reg.upload("app", data) for data in datas]
    reg.clock.advance(GRACE + 1)
    cutoff = int((reg.clock() - GRACE) * 1000)
    reg.meta.drop_links(reg.meta.stale_links(cutoff, 100), cutoff)
    orphans = reg.meta.orphan_blobs(cutoff, 100)
    assert sorted(orphans) == sorted(digests)

    trashed: list[str] = []

    def dying_remove(digest: str) -> None:
        if len(trashed) == 2:
            raise KeyboardInterrupt("killed")
        reg.blobs.trash(digest)
        trashed.append(digest)

    with pytest.raises(KeyboardInterrupt):
        reg.meta.delete_blobs(orphans, cutoff, dying_remove)
    assert all(reg.has_row(d) for d in digests)  # rolled back
    assert reg.trash() == sorted(trashed)
    assert reg.services.gc.reconcile() == 2
    assert reg.trash() == []
    for d, data in zip(digests, datas, strict=True):
        assert reg.read(d) == data

    report = reg.collect(after=0)  # still garbage: now collected for good
    assert sorted(report.deleted) == sorted(digests)
    assert report.bytes_freed == sum(len(data) for data in datas)


def test_reconcile_purges_a_trashed_blob_that_is_not_recorded(reg: Registry) -> None:
    data = blob(2000)
    d = sha256(data)
    stage(reg, data, commit_as=d)  # bytes in place, no row: a crash before the metadata commit
    assert reg.blobs.trash(d)
    assert reg.trash() == [d]
    assert reg.services.gc.reconcile() == 0
    assert reg.trash() == [] and not reg.has_file(d) and not reg.has_row(d)
    assert reg.disk_bytes("blobs", "trash") == 0


# -- upload sessions and stray files ---------------------------------------------------------------


def stage(reg: Registry, data: bytes, *, commit_as: str | None = None, prepare: bool = False) -> str:
    """A staging file with data in it, without any metadata row; optionally committed as a blob."""
    upload_id = uuid.uuid4().hex
    reg.blobs.start_upload(upload_id)
    writer = reg.blobs.upload_writer(upload_id, 0)
    writer.write(data)
    writer.close()
    if prepare:
        reg.blobs.prepare(upload_id)
    if commit_as is not None:
        reg.blobs.commit(upload_id, commit_as)
    return upload_id


def test_abandoned_upload_sessions_are_purged_after_upload_max_age(reg: Registry) -> None:
    uploads = reg.services.uploads
    upload_id = uploads.start(reg.caller, "app")

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 1000

    assert asyncio.run(uploads.append(reg.caller, "app", upload_id, body())) == 1000

    report = reg.collect(after=UPLOAD_MAX_AGE - 10)
    assert report.uploads_purged == 0 and report.stray_files_deleted == 0
    assert reg.meta.get_upload(upload_id) == (reg.repo_id("app"), 1000)
    assert reg.blobs.upload_size(upload_id) == 1000

    report = reg.collect(after=20)
    assert report.uploads_purged == 1
    assert reg.meta.get_upload(upload_id) is None
    assert reg.blobs.upload_size(upload_id) is None
    assert reg.disk_bytes("uploads") == 0


def test_stray_files_past_the_grace_window_are_removed_younger_kept(reg: Registry) -> None:
    now = reg.clock()
    old, young = now - GRACE - 10, now - GRACE + 60

    old_staging = stage(reg, b"a" * 10)
    young_staging = stage(reg, b"b" * 10)
    old_blob, young_blob = blob(111), blob(222)
    stage(reg, old_blob, commit_as=sha256(old_blob))
    stage(reg, young_blob, commit_as=sha256(young_blob))
    # A live session whose staging file is old (not written for a while) but whose row is fresh.
    live = reg.services.uploads.start(reg.caller, "app")
    # A recorded, referenced blob whose file is old.
    img = reg.image("app", [blob(333)])

    def age(path: str | Path, when: float) -> None:
        os.utime(path, (when, when))

    age(reg.root / "uploads" / old_staging, old)
    age(reg.root / "uploads" / young_staging, young)
    age(reg.root / "uploads" / live, old)
    age(str(reg.blobs.local_path(sha256(old_blob))), old)
    age(str(reg.blobs.local_path(sha256(young_blob))), young)
    for d in img.blobs:
        age(str(reg.blobs.local_path(d)), old)

    report = reg.collect(after=0)
    assert report.stray_files_deleted == 2
    assert reg.blobs.upload_size(old_staging) is None
    assert reg.blobs.upload_size(young_staging) == 10
    assert reg.blobs.upload_size(live) == 0 and reg.meta.get_upload(live) is not None
    assert not reg.has_file(sha256(old_blob))
    assert reg.read(sha256(young_blob)) == young_blob
    for d in img.blobs:
        assert reg.intact("app", d)

    report = reg.collect(after=61)  # now the young ones are old enough too
    assert report.stray_files_deleted == 2
    assert reg.blobs.upload_size(young_staging) is None and not reg.has_file(sha256(young_blob))


# -- a sweep racing a new upload of the same digest ------------------------------------------------


@dataclass
class Race:
    digest: str
    data: bytes
    repo_id: int
    upload_id: str
    cutoff: int
    orphans: list[str]


def race_setup(reg: Registry) -> Race:
    """A blob past the grace window with no links (the collector's next victim), and a new upload of
    the same bytes staged and fsynced, ready for commit_blob."""
    data = blob(3000)
    d = reg.upload("app", data)
    reg.clock.advance(GRACE + 1)
    cutoff = int((reg.clock() - GRACE) * 1000)
    assert reg.meta.drop_links(reg.meta.stale_links(cutoff, 100), cutoff) == 1
    orphans = reg.meta.orphan_blobs(cutoff, 100)
    assert orphans == [d]
    upload_id = stage(reg, data, prepare=True)
    reg.meta.create_upload(upload_id, reg.repo_id("app"), reg.services.repositories.now_ms())
    return Race(d, data, reg.repo_id("app"), upload_id, cutoff, orphans)


def commit(reg: Registry, race: Race) -> None:
    reg.meta.commit_blob(race.repo_id, race.digest, len(race.data), reg.services.repositories.now_ms(),
                         lambda: reg.blobs.place(race.upload_id, race.digest))
    reg.meta.delete_upload(race.upload_id)


def sweep(reg: Registry, race: Race, remove: Any = None) -> list[tuple[str, int]]:
    """The collector's blob phase for the chosen orphans: delete in a transaction, then purge."""
    victims: list[tuple[str, int]] = reg.meta.delete_blobs(race.orphans, race.cutoff, remove or reg.blobs.trash)
    for digest, _ in victims:
        reg.blobs.purge(digest)
    return victims


def check_survived(reg: Registry, race: Race) -> None:
    assert reg.read(race.digest) == race.data
    assert reg.pull("app", race.digest) == race.data
    assert reg.blobs.upload_size(race.upload_id) is None  # the staged bytes were used or dropped
    assert reg.trash() == []
    # Inside the new grace window the blob stays; the next sweeps leave it alone.
    reg.collect(after=GRACE / 2)
    assert reg.pull("app", race.digest) == race.data


def test_race_sweep_first_then_commit(reg: Registry) -> None:
    race = race_setup(reg)
    assert sweep(reg, race) == [(race.digest, len(race.data))]
    assert not reg.has_row(race.digest) and not reg.has_file(race.digest)
    commit(reg, race)  # finds no file: the new bytes go in place
    check_survived(reg, race)


def test_race_commit_first_then_sweep(reg: Registry) -> None:
    race = race_setup(reg)
    commit(reg, race)  # refreshes created_at and the link
    assert sweep(reg, race) == []  # the candidate list is stale: re-checked and spared
    check_survived(reg, race)


def contend(first: Any, blocked: Any) -> Any:
    """Inside `first`'s write transaction, start `blocked` in a thread (it must wait for the write
    lock), then let `first` finish; returns what `blocked` returned."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = blocked()
        except BaseException as exc:  # reported in the main thread
            out["error"] = exc

    thread = threading.Thread(target=run)

    def hold() -> None:
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive(), "the second transaction did not wait for the write lock"

    first(hold)
    thread.join(30)
    assert not thread.is_alive()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_race_contended_sweep_holds_the_lock_while_commit_waits(reg: Registry) -> None:
    race = race_setup(reg)
    victims: list[tuple[str, int]] = []

    def first(hold: Any) -> None:
        def remove(digest: str) -> None:
            hold()
            reg.blobs.trash(digest)
        victims.extend(sweep(reg, race, remove))

    contend(first, lambda: commit(reg, race))
    assert victims == [(race.digest, len(race.data))]
    check_survived(reg, race)


def test_race_contended_commit_holds_the_lock_while_sweep_waits(reg: Registry) -> None:
    race = race_setup(reg)

    def first(hold: Any) -> None:
        def place() -> None:
            hold()
            reg.blobs.place(race.upload_id, race.digest)
        reg.meta.commit_blob(race.repo_id, race.digest, len(race.data), reg.services.repositories.now_ms(), place)
        reg.meta.delete_upload(race.upload_id)

    assert contend(first, lambda: sweep(reg, race)) == []
    check_survived(reg, race)


# -- nothing left behind ---------------------------------------------------------------------------


def test_deleting_everything_and_collecting_leaves_no_bytes(reg: Registry) -> None:
    shared = blob(10_000)
    images = [reg.image(repo, [shared, blob(1000 * (i + 1))]) for i, repo in enumerate(["ra", "rb", "ra", "rc"])]
    loose = reg.upload("rb", blob(777))
    uploads = reg.services.uploads
    abandoned = uploads.start(reg.caller, "rc")

    async def body() -> AsyncIterator[bytes]:
        yield b"y" * 4321

    asyncio.run(uploads.append(reg.caller, "rc", abandoned, body()))
    stage(reg, b"stray staging bytes")
    stray = blob(555)
    stage(reg, stray, commit_as=sha256(stray))
    assert reg.disk_bytes("blobs", "uploads") > 0

    stored: dict[str, int] = {loose: 777}
    for img in images:
        stored.update(img.blobs)
        reg.delete(img.repo, img.digest)

    report = reg.collect(after=max(GRACE, UPLOAD_MAX_AGE) + 1)
    assert sorted(report.deleted) == sorted(stored)
    assert report.bytes_freed == sum(stored.values())
    assert report.uploads_purged == 1
    assert report.stray_files_deleted == 2
    assert reg.disk_bytes("blobs", "uploads", "trash") == 0
    assert reg.meta.storage_totals() == (0, 0)
    with reg.meta.read() as conn:
        assert conn.execute(select(s.repository_blobs)).all() == []
        assert conn.execute(select(s.uploads)).all() == []


def test_a_collection_during_an_upload_start_leaves_the_session_intact(reg: Registry,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With a zero grace window a sweep can run between the two steps of starting an upload session
    (its staging file and its row): the session must still work afterwards."""
    gc = reg.services.gc
    gc.grace_seconds = 0
    sweeps: list[GcReport] = []

    def sweep_after(original: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            result = original(*args)
            if not sweeps:
                reg.clock.advance(1)  # the first step is already older than the zero grace window
                sweeps.append(gc.run())
            return result
        return wrapper

    monkeypatch.setattr(reg.meta, "create_upload", sweep_after(reg.meta.create_upload))
    monkeypatch.setattr(reg.blobs, "start_upload", sweep_after(reg.blobs.start_upload))
    upload_id = reg.services.uploads.start(reg.caller, "app")
    monkeypatch.undo()
    assert len(sweeps) == 1

    data = blob(500)

    async def body() -> AsyncIterator[bytes]:
        yield data

    assert asyncio.run(reg.services.uploads.complete(reg.caller, "app", upload_id, sha256(data), body())) == len(data)
    assert reg.pull("app", sha256(data)) == data
