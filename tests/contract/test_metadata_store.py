"""MetadataStore contract: one suite, run identically against SQLite and PostgreSQL.

Each backend gets one migrated database per module; every test starts from empty tables.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select

from cargohold.errors import Kind, RegistryError
from cargohold.storage.meta import schema as s
from cargohold.storage.meta.store import MetadataStore, NewManifest, Repository

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
NOW = 1_700_000_000_000
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"



def dg(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def manifest(content: bytes, *, blob_refs: tuple[str, ...] = (), manifest_refs: tuple[str, ...] = (),
             media_type: str = OCI_MANIFEST, subject: str | None = None, artifact_type: str | None = None,
             config: str | None = None, image_size: int = 0,
             annotations: dict[str, str] | None = None) -> NewManifest:
    return NewManifest(digest=dg(content.decode()), media_type=media_type, artifact_type=artifact_type,
                       subject_digest=subject, config_digest=config, image_size=image_size,
                       annotations=annotations, content=content, blob_refs=blob_refs,
                       manifest_refs=manifest_refs)


@pytest.fixture()
def store(engine: Engine) -> MetadataStore:
    with engine.begin() as conn:
        for table in reversed(s.metadata.sorted_tables):
            conn.execute(delete(table))
    return MetadataStore(engine)


@pytest.fixture()
def repo(store: MetadataStore) -> Repository:
    return store.create_repository(ACCOUNT, "team/app", NOW)


def count_rows(store: MetadataStore, table: Any, repository_id: int | None = None) -> int:
    stmt = select(func.count()).select_from(table)
    if repository_id is not None:
        stmt = stmt.where(table.c.repository_id == repository_id)
    with store.read() as conn:
        return int(conn.execute(stmt).scalar_one())


def push_image(store: MetadataStore, repo_id: int, name: str, tag: str | None = None,
               **kw: Any) -> NewManifest:
    """Link a config and a layer blob, then put a manifest referencing them."""
    config, layer = dg(f"{name}-config"), dg(f"{name}-layer")
    store.link_blob(repo_id, config, 10, NOW)
    store.link_blob(repo_id, layer, 100, NOW)
    new = manifest(name.encode(), blob_refs=(config, layer), config=config, image_size=110, **kw)
    store.put_manifest(repo_id, new, tag, NOW)
    return new


# -- settings -----------------------------------------------------------------------------


def test_settings_first_writer_wins(store: MetadataStore) -> None:
    assert store.get_setting("secret") is None
    assert store.set_setting_if_absent("secret", "one") == "one"
    assert store.set_setting_if_absent("secret", "two") == "one"
    assert store.get_setting("secret") == "one"
    assert store.set_setting_if_absent("other", "x" * 5000) == "x" * 5000
    assert store.get_setting("secret") == "one"


# -- principals and access keys -------------------------------------------------------------


def test_principals_and_access_keys(store: MetadataStore) -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:root"
    store.ensure_principal(arn, ACCOUNT, "root", "root", "AIDAROOT", NOW)
    store.ensure_principal(arn, ACCOUNT, "root", "changed", "AIDAOTHER", NOW + 1)  # idempotent
    assert store.count_access_keys(arn) == 0
    assert store.get_access_key("AKIAMISSING") is None

    store.add_access_key("AKIAONE", arn, b"\x00enc\xffrypted", NOW)
    store.add_access_key("AKIATWO", arn, b"second", NOW, status="Inactive")
    assert store.count_access_keys(arn) == 2
    assert store.count_access_keys("arn:aws:iam::000000000000:root") == 0

    key = store.get_access_key("AKIAONE")
    assert key is not None
    assert type(key.secret_enc) is bytes
    assert (key.key_id, key.secret_enc, key.status, key.principal_arn, key.account_id, key.principal_kind,
            key.principal_name, key.user_id) == (
        "AKIAONE", b"\x00enc\xffrypted", "Active", arn, ACCOUNT, "root", "root", "AIDAROOT")
    two = store.get_access_key("AKIATWO")
    assert two is not None and two.status == "Inactive"


# -- repositories ---------------------------------------------------------------------------


def test_create_repository_defaults(store: MetadataStore) -> None:
    repo = store.create_repository(ACCOUNT, "team/app", NOW)
    assert isinstance(repo.id, int)
    assert (repo.account_id, repo.name, repo.created_at) == (ACCOUNT, "team/app", NOW)
    assert repo.tag_mutability == "MUTABLE"
    assert repo.mutability_exclusions == []
    assert repo.scan_on_push is False
    assert repo.encryption is None
    assert repo.resource_tags == []
    assert repo.policy is None
    assert store.get_repository(ACCOUNT, "team/app") == repo
    assert store.get_repository(ACCOUNT, "team/other") is None
    assert store.get_repository(OTHER_ACCOUNT, "team/app") is None


def test_create_repository_with_options(store: MetadataStore) -> None:
    exclusions = [{"filterType": "WILDCARD", "filter": "dev-*"}]
    encryption = {"encryptionType": "KMS", "kmsKey": "arn:aws:kms:eu-west-1:1:key/x"}
    resource_tags = [{"Key": "team", "Value": "ünïcode"}]
    repo = store.create_repository(ACCOUNT, "opts", NOW, tag_mutability="IMMUTABLE_WITH_EXCLUSION",
                                   mutability_exclusions=exclusions, scan_on_push=True,
                                   encryption=encryption, resource_tags=resource_tags)
    fetched = store.get_repository(ACCOUNT, "opts")
    assert fetched == repo
    assert repo.tag_mutability == "IMMUTABLE_WITH_EXCLUSION"
    assert repo.mutability_exclusions == exclusions
    assert repo.scan_on_push is True
    assert repo.encryption == encryption
    assert repo.resource_tags == resource_tags


def test_create_repository_duplicate(store: MetadataStore) -> None:
    first = store.create_repository(ACCOUNT, "dup", NOW)
    with pytest.raises(RegistryError) as info:
        store.create_repository(ACCOUNT, "dup", NOW + 5, scan_on_push=True)
    assert info.value.kind is Kind.REPOSITORY_EXISTS
    assert "dup" in info.value.message and ACCOUNT in info.value.message
    again = store.create_repository(ACCOUNT, "dup", NOW + 5, scan_on_push=True, exist_ok=True)
    assert again == first  # the existing repository, unchanged
    other = store.create_repository(OTHER_ACCOUNT, "dup", NOW)  # names are per account
    assert other.id != first.id
    # The store is still usable after the failed insert (no aborted transaction left behind).
    assert store.create_repository(ACCOUNT, "after-dup", NOW).name == "after-dup"


def test_list_repositories_order_and_pagination(store: MetadataStore) -> None:
    names = ["b", "a/b", "a-b", "a.b", "a_b", "ab", "a0", "a", "z/z", "team/app", "9lives"]
    for name in names:
        store.create_repository(ACCOUNT, name, NOW)
    store.create_repository(OTHER_ACCOUNT, "a/c", NOW)
    expected = sorted(names)  # byte order, like SQLite's BINARY collation
    assert [r.name for r in store.list_repositories(ACCOUNT, None, 100)] == expected
    pages: list[str] = []
    after: str | None = None
    while True:
        page = store.list_repositories(ACCOUNT, after, 3)
        assert len(page) <= 3
        if not page:
            break
        pages += [r.name for r in page]
        after = page[-1].name
    assert pages == expected
    assert [r.name for r in store.list_repositories(ACCOUNT, "a_", 2)] == [n for n in expected if n > "a_"][:2]
    assert store.list_repositories(ACCOUNT, "zzz", 10) == []
    assert [r.name for r in store.list_repositories(OTHER_ACCOUNT, None, 10)] == ["a/c"]


def test_update_repository(store: MetadataStore, repo: Repository) -> None:
    store.update_repository(repo.id, tag_mutability="IMMUTABLE", scan_on_push=True,
                            mutability_exclusions=[{"filterType": "WILDCARD", "filter": "x*"}],
                            encryption={"encryptionType": "AES256"},
                            resource_tags=[{"Key": "k", "Value": "v"}],
                            policy='{"Version": "2012-10-17", "Statement": []}')
    updated = store.get_repository(ACCOUNT, repo.name)
    assert updated is not None
    assert updated.id == repo.id and updated.created_at == repo.created_at
    assert updated.tag_mutability == "IMMUTABLE"
    assert updated.scan_on_push is True
    assert updated.mutability_exclusions == [{"filterType": "WILDCARD", "filter": "x*"}]
    assert updated.encryption == {"encryptionType": "AES256"}
    assert updated.resource_tags == [{"Key": "k", "Value": "v"}]
    assert updated.policy == '{"Version": "2012-10-17", "Statement": []}'
    store.update_repository(repo.id, resource_tags=None, scan_on_push=False, policy=None)
    again = store.get_repository(ACCOUNT, repo.name)
    assert again is not None and again.resource_tags == [] and again.scan_on_push is False
    assert again.policy is None


def test_delete_repository_cascades(store: MetadataStore) -> None:
    doomed = store.create_repository(ACCOUNT, "doomed", NOW)
    kept = store.create_repository(ACCOUNT, "kept", NOW)
    for r in (doomed, kept):
        img = push_image(store, r.id, "img", tag="latest")
        store.put_manifest(r.id, manifest(b"index", manifest_refs=(img.digest,), media_type=OCI_INDEX),
                           "multi", NOW)
        store.create_upload(f"upload-{r.name}-0123456789", r.id, NOW)
    assert store.repository_image_count(doomed.id) == 2

    store.delete_repository(doomed.id)

    assert store.get_repository(ACCOUNT, "doomed") is None
    for table in (s.tags, s.manifests, s.manifest_references, s.repository_blobs, s.uploads):
        assert count_rows(store, table, doomed.id) == 0, table.name
    assert store.get_upload("upload-doomed-0123456789") is None
    assert store.repository_image_count(doomed.id) == 0
    # Global blob rows stay (garbage collection decides), and the other repository is untouched.
    assert store.blob_size(dg("img-layer")) == 100
    assert store.repository_image_count(kept.id) == 2
    assert store.list_tags(kept.id, None, 10) == ["latest", "multi"]
    assert store.get_upload("upload-kept-0123456789") == (kept.id, 0)
    assert store.repository_blob_size(kept.id, dg("img-layer")) == 100
    # The name can be reused.
    assert store.create_repository(ACCOUNT, "doomed", NOW).id != doomed.id


# -- blobs ----------------------------------------------------------------------------------


def test_link_and_unlink_blob(store: MetadataStore, repo: Repository) -> None:
    other = store.create_repository(ACCOUNT, "other", NOW)
    digest = dg("layer")
    assert store.repository_blob_size(repo.id, digest) is None
    assert store.blob_size(digest) is None

    store.link_blob(repo.id, digest, 4096, NOW)
    store.link_blob(repo.id, digest, 4096, NOW + 1)  # idempotent
    assert store.repository_blob_size(repo.id, digest) == 4096
    assert store.repository_blob_size(other.id, digest) is None  # linked per repository
    assert store.blob_size(digest) == 4096
    assert count_rows(store, s.repository_blobs, repo.id) == 1
    assert count_rows(store, s.blobs) == 1

    store.link_blob(other.id, digest, 4096, NOW)
    assert store.repository_blob_size(other.id, digest) == 4096
    assert count_rows(store, s.blobs) == 1

    assert store.unlink_blob(repo.id, digest) is True
    assert store.unlink_blob(repo.id, digest) is False
    assert store.repository_blob_size(repo.id, digest) is None
    assert store.repository_blob_size(other.id, digest) == 4096
    assert store.blob_size(digest) == 4096

    big = dg("big")
    store.link_blob(repo.id, big, 5 * 1024**4, NOW)  # sizes beyond 32 bits
    assert store.repository_blob_size(repo.id, big) == 5 * 1024**4


# -- upload sessions ------------------------------------------------------------------------


def test_upload_lifecycle(store: MetadataStore, repo: Repository) -> None:
    uid = "u0123456789abcdef"
    assert store.get_upload(uid) is None
    store.create_upload(uid, repo.id, NOW)
    assert store.get_upload(uid) == (repo.id, 0)

    assert store.advance_upload(uid, 0, 10, NOW + 1) is True
    assert store.get_upload(uid) == (repo.id, 10)
    assert store.advance_upload(uid, 0, 20, NOW + 2) is False  # stale expectation: compare-and-set fails
    assert store.get_upload(uid) == (repo.id, 10)
    assert store.advance_upload(uid, 10, 6 * 1024**3, NOW + 3) is True
    assert store.get_upload(uid) == (repo.id, 6 * 1024**3)
    assert store.advance_upload("nosuchupload0000000", 0, 1, NOW) is False

    assert store.delete_upload(uid) is True
    assert store.delete_upload(uid) is False
    assert store.get_upload(uid) is None
    assert store.advance_upload(uid, 6 * 1024**3, 1, NOW) is False


def test_stale_uploads(store: MetadataStore, repo: Repository) -> None:
    for i in range(5):
        store.create_upload(f"upload-{i:016d}", repo.id, NOW + i * 1000)
    # Activity refreshes an upload: #0 is no longer stale.
    assert store.advance_upload("upload-0000000000000000", 0, 5, NOW + 10_000)
    assert sorted(store.stale_uploads(NOW + 3000)) == ["upload-0000000000000001", "upload-0000000000000002"]
    assert store.stale_uploads(NOW) == []
    assert len(store.stale_uploads(NOW + 100_000)) == 5
    assert len(store.stale_uploads(NOW + 100_000, limit=2)) == 2


# -- manifests and tags ---------------------------------------------------------------------


def test_put_manifest_missing_references(store: MetadataStore, repo: Repository) -> None:
    other = store.create_repository(ACCOUNT, "other", NOW)
    have, elsewhere, absent = dg("have"), dg("elsewhere"), dg("absent")
    store.link_blob(repo.id, have, 1, NOW)
    store.link_blob(other.id, elsewhere, 1, NOW)  # linked, but in another repository
    child = dg("child-manifest")
    new = manifest(b"needs-refs", blob_refs=(have, elsewhere, absent), manifest_refs=(child,))

    with pytest.raises(RegistryError) as info:
        store.put_manifest(repo.id, new, "latest", NOW)
    assert info.value.kind is Kind.MANIFEST_BLOB_UNKNOWN
    detail = info.value.detail
    assert detail["missing"] == [elsewhere, absent, child]
    assert detail.get("blobs", [elsewhere, absent]) == [elsewhere, absent]
    assert detail.get("manifests", [child]) == [child]

    # Nothing was stored.
    assert store.get_manifest(repo.id, new.digest) is None
    assert store.tag_digest(repo.id, "latest") is None
    assert store.repository_image_count(repo.id) == 0
    assert count_rows(store, s.manifest_references, repo.id) == 0
    assert count_rows(store, s.tags, repo.id) == 0


def test_put_and_get_manifest(store: MetadataStore, repo: Repository) -> None:
    new = push_image(store, repo.id, "image-v1", tag="v1", annotations={"org.opencontainers.image.title": "x"},
                     artifact_type="application/vnd.example+type")
    content = b"image-v1"

    got = store.get_manifest(repo.id, new.digest)
    assert got is not None
    assert type(got.content) is bytes and got.content == content
    assert (got.digest, got.media_type, got.artifact_type, got.subject_digest, got.config_digest) == (
        new.digest, OCI_MANIFEST, "application/vnd.example+type", None, dg("image-v1-config"))
    assert (got.size, got.image_size, got.pushed_at, got.last_pulled_at) == (len(content), 110, NOW, None)
    assert got.annotations == {"org.opencontainers.image.title": "x"}

    bare = store.get_manifest(repo.id, new.digest, with_content=False)
    assert bare is not None and bare.content is None
    assert bare == got.__class__(**{**got.__dict__, "content": None})

    by_tag = store.get_manifest_by_tag(repo.id, "v1")
    assert by_tag == got
    by_tag_bare = store.get_manifest_by_tag(repo.id, "v1", with_content=False)
    assert by_tag_bare == bare
    assert store.get_manifest_by_tag(repo.id, "nope") is None
    assert store.get_manifest(repo.id, dg("nope")) is None
    other = store.create_repository(ACCOUNT, "other", NOW)
    assert store.get_manifest(other.id, new.digest) is None
    assert store.get_manifest_by_tag(other.id, "v1") is None

    assert store.tag_digest(repo.id, "v1") == new.digest
    assert store.repository_image_count(repo.id) == 1
    with store.read() as conn:
        refs = set(conn.execute(select(s.manifest_references.c.child_digest, s.manifest_references.c.kind)
                                .where(s.manifest_references.c.parent_digest == new.digest)).all())
    assert refs == {(dg("image-v1-config"), "blob"), (dg("image-v1-layer"), "blob")}


def test_put_manifest_untagged_and_idempotent(store: MetadataStore, repo: Repository) -> None:
    new = push_image(store, repo.id, "img")  # no tag
    assert store.list_tags(repo.id, None, 10) == []
    assert store.get_manifest(repo.id, new.digest) is not None
    # Pushing the same manifest again (later, with a tag) keeps the one row and its push time.
    store.put_manifest(repo.id, new, "again", NOW + 500)
    store.put_manifest(repo.id, new, None, NOW + 600)
    got = store.get_manifest(repo.id, new.digest)
    assert got is not None and got.pushed_at == NOW
    assert store.repository_image_count(repo.id) == 1
    assert store.list_tags(repo.id, None, 10) == ["again"]
    assert count_rows(store, s.manifest_references, repo.id) == 2


def test_tag_upsert_moves_tag(store: MetadataStore, repo: Repository) -> None:
    one = push_image(store, repo.id, "one", tag="latest")
    two = push_image(store, repo.id, "two", tag="latest")
    assert store.tag_digest(repo.id, "latest") == two.digest
    got = store.get_manifest_by_tag(repo.id, "latest", with_content=False)
    assert got is not None and got.digest == two.digest
    assert store.tags_of(repo.id, [one.digest, two.digest]) == {one.digest: [], two.digest: ["latest"]}
    assert store.repository_image_count(repo.id) == 2  # the old manifest stays, untagged
    store.put_manifest(repo.id, one, "latest", NOW + 1)
    assert store.tag_digest(repo.id, "latest") == one.digest
    with store.read() as conn:
        updated_at = conn.execute(select(s.tags.c.updated_at).where(s.tags.c.name == "latest")).scalar_one()
    assert updated_at == NOW + 1


def test_delete_manifest_removes_its_tags(store: MetadataStore, repo: Repository) -> None:
    one = push_image(store, repo.id, "one", tag="a")
    store.put_manifest(repo.id, one, "b", NOW)
    two = push_image(store, repo.id, "two", tag="c")

    assert store.delete_manifest(repo.id, one.digest) is True
    assert store.delete_manifest(repo.id, one.digest) is False
    assert store.get_manifest(repo.id, one.digest) is None
    assert store.tag_digest(repo.id, "a") is None and store.tag_digest(repo.id, "b") is None
    assert store.list_tags(repo.id, None, 10) == ["c"]
    assert store.get_manifest(repo.id, two.digest) is not None
    with store.read() as conn:
        parents = set(conn.execute(select(s.manifest_references.c.parent_digest)).scalars())
    assert parents == {two.digest}
    # Blob links are not touched by deleting a manifest.
    assert store.repository_blob_size(repo.id, dg("one-layer")) == 100


def test_delete_tag(store: MetadataStore, repo: Repository) -> None:
    img = push_image(store, repo.id, "img", tag="a")
    store.put_manifest(repo.id, img, "b", NOW)
    assert store.delete_tag(repo.id, "a") is True
    assert store.delete_tag(repo.id, "a") is False
    assert store.delete_tag(repo.id, "never") is False
    assert store.tag_digest(repo.id, "a") is None
    assert store.tag_digest(repo.id, "b") == img.digest
    assert store.get_manifest(repo.id, img.digest) is not None  # the manifest stays


def test_list_tags_lexical_order_and_pagination(store: MetadataStore, repo: Repository) -> None:
    tags = ["latest", "v1.0", "V2", "a", "A", "_x", "1.0", "10", "9", "a-b", "a_b", "a.b", "ab", "Z",
            "B", "b", "x" * 128]
    img = push_image(store, repo.id, "img")
    for tag in tags:
        store.put_manifest(repo.id, img, tag, NOW)
    other = store.create_repository(ACCOUNT, "other", NOW)
    push_image(store, other.id, "img", tag="other-tag")

    # Byte order (SQLite BINARY, PostgreSQL COLLATE "C"), what the reference registry and the
    # conformance suite's `last` check use, identical on every backend.
    expected = sorted(tags)
    assert store.list_tags(repo.id, None, 1000) == expected
    collected: list[str] = []
    after: str | None = None
    while page := store.list_tags(repo.id, after, 4):
        assert len(page) <= 4
        collected += page
        after = page[-1]
    assert collected == expected
    for cursor in ("a", "A", "B", "Zz", "_", "v1.0", "0"):
        assert store.list_tags(repo.id, cursor, 3) == [t for t in expected if t > cursor][:3]
    assert store.list_tags(repo.id, "~", 10) == []
    assert store.list_tags(other.id, None, 10) == ["other-tag"]


def test_tags_of(store: MetadataStore, repo: Repository) -> None:
    one = push_image(store, repo.id, "one", tag="z")
    for tag in ("b", "A", "a"):
        store.put_manifest(repo.id, one, tag, NOW)
    two = push_image(store, repo.id, "two", tag="two")
    untagged = push_image(store, repo.id, "untagged")
    other = store.create_repository(ACCOUNT, "other", NOW)
    store.link_blob(other.id, dg("one-config"), 10, NOW)
    store.link_blob(other.id, dg("one-layer"), 100, NOW)
    store.put_manifest(other.id, one, "elsewhere", NOW)

    result = store.tags_of(repo.id, [one.digest, two.digest, untagged.digest, dg("unknown")])
    assert result == {one.digest: ["A", "a", "b", "z"], two.digest: ["two"], untagged.digest: [],
                      dg("unknown"): []}
    assert store.tags_of(repo.id, []) == {}


def test_referrers(store: MetadataStore, repo: Repository) -> None:
    subject = push_image(store, repo.id, "subject", tag="v1")
    sigs = []
    for i in range(3):
        sig = manifest(f"signature-{i}".encode(), subject=subject.digest,
                       artifact_type="application/vnd.dev.cosign.simplesigning.v1+json",
                       annotations={"n": str(i)})
        store.put_manifest(repo.id, sig, None, NOW + i)
        sigs.append(sig)
    store.put_manifest(repo.id, manifest(b"unrelated"), None, NOW)
    other = store.create_repository(ACCOUNT, "other", NOW)
    store.put_manifest(other.id, manifest(b"foreign", subject=subject.digest), None, NOW)

    found = store.referrers(repo.id, subject.digest)
    assert [r.digest for r in found] == sorted(sig.digest for sig in sigs)
    by_digest = {sig.digest: sig for sig in sigs}
    for row in found:
        sig = by_digest[row.digest]
        assert row.content is None
        assert row.subject_digest == subject.digest
        assert row.artifact_type == sig.artifact_type
        assert row.annotations == sig.annotations
        assert row.size == len(sig.content)
    assert store.referrers(repo.id, dg("nothing")) == []
    # A referrer may be pushed before its subject exists.
    early = manifest(b"early", subject=dg("future"))
    store.put_manifest(repo.id, early, None, NOW)
    assert [r.digest for r in store.referrers(repo.id, dg("future"))] == [early.digest]


def test_record_pull(store: MetadataStore, repo: Repository) -> None:
    img = push_image(store, repo.id, "img", tag="latest")
    store.record_pull(repo.id, img.digest, NOW + 42)
    got = store.get_manifest(repo.id, img.digest, with_content=False)
    assert got is not None and got.last_pulled_at == NOW + 42 and got.pushed_at == NOW
    store.record_pull(repo.id, dg("unknown"), NOW)  # no error, nothing happens
    store.record_pull(repo.id, img.digest, NOW + 43)
    got = store.get_manifest_by_tag(repo.id, "latest", with_content=False)
    assert got is not None and got.last_pulled_at == NOW + 43


# -- transactions and concurrency -----------------------------------------------------------


def _run_threads(count: int, target: Callable[[int], None], timeout: float = 30.0) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout)
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads did not finish in time (deadlock?)"
    if errors:
        raise errors[0]


def test_concurrent_writers(store: MetadataStore, repo: Repository) -> None:
    threads, rounds = 6, 8
    shared_blob = dg("shared-layer")
    upload = "shared-upload-0000000"
    store.create_upload(upload, repo.id, NOW)
    advanced = [0] * threads

    def work(i: int) -> None:
        assert store.create_repository(ACCOUNT, "racy", NOW, exist_ok=True).name == "racy"
        store.set_setting_if_absent("racy", f"value-{i}")
        for r in range(rounds):
            own = dg(f"layer-{i}-{r}")
            store.link_blob(repo.id, shared_blob, 1000, NOW)
            store.link_blob(repo.id, own, 10, NOW)
            repository_id, offset = store.get_upload(upload) or (0, -1)
            assert repository_id == repo.id
            if store.advance_upload(upload, offset, offset + 1, NOW):
                advanced[i] += 1
            new = manifest(f"m-{i}-{r}".encode(), blob_refs=(shared_blob, own))
            store.put_manifest(repo.id, new, "latest", NOW + r)
            store.put_manifest(repo.id, new, f"t-{i}-{r}", NOW + r)
            store.put_manifest(repo.id, manifest(b"same-for-all", blob_refs=(shared_blob,)), "same", NOW)

    _run_threads(threads, work)

    upload_state = store.get_upload(upload)
    assert upload_state is not None and upload_state[1] == sum(advanced) > 0
    assert store.repository_image_count(repo.id) == threads * rounds + 1
    tags = store.list_tags(repo.id, None, 1000)
    assert len(tags) == threads * rounds + 2 and "latest" in tags and "same" in tags
    assert store.tag_digest(repo.id, "latest") in {dg(f"m-{i}-{r}") for i in range(threads) for r in range(rounds)}
    assert store.repository_blob_size(repo.id, shared_blob) == 1000
    assert count_rows(store, s.repository_blobs, repo.id) == threads * rounds + 1
    assert len(store.list_repositories(ACCOUNT, None, 10)) == 2
    assert store.get_setting("racy") in {f"value-{i}" for i in range(threads)}


def test_put_manifest_reference_check_is_atomic(store: MetadataStore, repo: Repository) -> None:
    """A blob unlinked by a concurrent, not yet committed transaction cannot be referenced.

    put_manifest has to wait for that transaction and then see the blob gone; it must not
    store a manifest that references a blob whose link is being deleted.
    """
    layer = dg("layer")
    store.link_blob(repo.id, layer, 10, NOW)
    new = manifest(b"racing", blob_refs=(layer,))
    outcome: list[BaseException | None] = []

    def put() -> None:
        try:
            store.put_manifest(repo.id, new, "latest", NOW)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    rb = s.repository_blobs
    thread = threading.Thread(target=put, daemon=True)
    with store.write() as conn:
        conn.execute(delete(rb).where(rb.c.repository_id == repo.id, rb.c.digest == layer))
        thread.start()
        thread.join(0.5)  # time for put_manifest to run its check against the uncommitted delete
    thread.join(10)
    assert not thread.is_alive()
    assert len(outcome) == 1
    exc = outcome[0]
    assert isinstance(exc, RegistryError), f"manifest stored despite its blob being unlinked: {exc!r}"
    assert exc.kind is Kind.MANIFEST_BLOB_UNKNOWN and exc.detail["missing"] == [layer]
    assert store.get_manifest(repo.id, new.digest) is None


# -- listings for the ECR face --------------------------------------------------------------


def test_list_manifests_and_manifests_by_digest(store: MetadataStore, repo: Repository) -> None:
    images = [push_image(store, repo.id, f"img-{i}") for i in range(5)]
    other = store.create_repository(ACCOUNT, "other", NOW)
    push_image(store, other.id, "foreign")
    expected = sorted(img.digest for img in images)

    assert [m.digest for m in store.list_manifests(repo.id, None, 100)] == expected
    collected: list[str] = []
    after: str | None = None
    while page := store.list_manifests(repo.id, after, 2):
        assert len(page) <= 2 and all(m.content is None for m in page)
        collected += [m.digest for m in page]
        after = page[-1].digest
    assert collected == expected

    wanted = [images[0].digest, images[3].digest, dg("unknown")]
    found = store.manifests_by_digest(repo.id, wanted)
    assert set(found) == {images[0].digest, images[3].digest}
    assert found[images[0].digest].content is None and found[images[0].digest].image_size == 110
    with_content = store.manifests_by_digest(repo.id, wanted, with_content=True)
    assert with_content[images[3].digest].content == b"img-3"
    assert store.manifests_by_digest(other.id, wanted) == {}


def test_tag_map_and_parents_of(store: MetadataStore, repo: Repository) -> None:
    one = push_image(store, repo.id, "one", tag="v1")
    two = push_image(store, repo.id, "two", tag="v2")
    index = manifest(b"index", manifest_refs=(one.digest, two.digest), media_type=OCI_INDEX)
    store.put_manifest(repo.id, index, "multi", NOW)
    other_index = manifest(b"index-2", manifest_refs=(one.digest,), media_type=OCI_INDEX)
    store.put_manifest(repo.id, other_index, None, NOW)

    assert store.tag_map(repo.id, ["v1", "multi", "missing"]) == {"v1": one.digest, "multi": index.digest}
    assert store.tag_map(repo.id, []) == {}
    assert sorted(store.parents_of(repo.id, one.digest)) == sorted([index.digest, other_index.digest])
    assert store.parents_of(repo.id, two.digest) == [index.digest]
    assert store.parents_of(repo.id, dg("one-layer")) == []  # blob references are not parents
    store.delete_manifest(repo.id, index.digest)
    assert store.parents_of(repo.id, one.digest) == [other_index.digest]


def test_repository_blob_sizes(store: MetadataStore, repo: Repository) -> None:
    other = store.create_repository(ACCOUNT, "other", NOW)
    store.link_blob(repo.id, dg("a"), 1, NOW)
    store.link_blob(repo.id, dg("b"), 3 * 1024**4, NOW)
    store.link_blob(other.id, dg("c"), 7, NOW)
    assert store.repository_blob_sizes(repo.id, [dg("a"), dg("b"), dg("c"), dg("x")]) == {
        dg("a"): 1, dg("b"): 3 * 1024**4}
    assert store.repository_blob_sizes(repo.id, []) == {}


def test_upload_parts(store: MetadataStore, repo: Repository) -> None:
    uid = "part-upload-0000000"
    store.create_upload(uid, repo.id, NOW)
    assert store.upload_last_part(uid) is None
    store.set_upload_part(uid, 5 * 1024 * 1024)
    assert store.upload_last_part(uid) == 5 * 1024 * 1024
    store.set_upload_part(uid, 12)
    assert store.upload_last_part(uid) == 12
    assert store.get_upload(uid) == (repo.id, 0)
    assert store.upload_last_part("no-such-upload-000") is None


# -- per-request reads see every commit at once, whoever made it -------------------------------------


def test_reads_see_commits_from_other_connections_immediately(store: MetadataStore, engine: Engine) -> None:
    """The SQLite fast path remembers results until the database changes; a write through another
    store (its own connections, as another worker process would have) is seen by the very next read."""
    other = MetadataStore(engine)
    repo = store.create_repository(ACCOUNT, "seen/app", NOW, resource_tags=[{"Key": "a", "Value": "1"}])
    for _ in range(3):  # remembered now, if it is going to be
        assert store.get_repository(ACCOUNT, "seen/app") is not None
        assert store.repository_blob(repo.id, dg("x")) is None
        assert store.get_manifest_by_tag(repo.id, "v1") is None
    other.update_repository(repo.id, tag_mutability="IMMUTABLE")
    other.link_blob(repo.id, dg("x"), 7, NOW)
    push_image(other, repo.id, "seen-image", "v1")
    found = store.get_repository(ACCOUNT, "seen/app")
    assert found is not None and found.tag_mutability == "IMMUTABLE"
    assert store.repository_blob(repo.id, dg("x")) == (7, NOW)
    tagged = store.get_manifest_by_tag(repo.id, "v1")
    assert tagged is not None and tagged.digest == dg("seen-image")
    other.delete_repository(repo.id)
    assert store.get_repository(ACCOUNT, "seen/app") is None


def test_a_request_scope_sees_its_own_process_writes_and_fresh_commits_after_it(
        store: MetadataStore, engine: Engine) -> None:
    """Inside request_scope the reads share one look at the database: another process's commit made
    mid-scope shows from the next scope on, while this process's own writes show at once."""
    other = MetadataStore(engine)  # its writes stand for another worker process's (own connections)
    repo = store.create_repository(ACCOUNT, "scoped/app", NOW)
    with store.request_scope():
        assert store.repository_blob(repo.id, dg("s1")) is None
        store.link_blob(repo.id, dg("s1"), 11, NOW)  # this process writes within the scope ...
        assert store.repository_blob(repo.id, dg("s1")) == (11, NOW)  # ... and reads it back at once
        other.link_blob(repo.id, dg("s2"), 12, NOW)
        store.repository_blob(repo.id, dg("s2"))  # before or after the commit: both are allowed here
    with store.request_scope():  # a new scope looks again
        assert store.repository_blob(repo.id, dg("s2")) == (12, NOW)
    other.unlink_blob(repo.id, dg("s2"))
    assert store.repository_blob(repo.id, dg("s2")) is None  # outside a scope every read looks


def test_rows_read_twice_share_no_mutable_values(store: MetadataStore) -> None:
    store.create_repository(ACCOUNT, "own/app", NOW, resource_tags=[{"Key": "a", "Value": "1"}])
    first = store.get_repository(ACCOUNT, "own/app")
    assert first is not None
    first.resource_tags.append({"Key": "b", "Value": "2"})
    first.resource_tags[0]["Value"] = "changed"
    again = store.get_repository(ACCOUNT, "own/app")
    assert again is not None and again.resource_tags == [{"Key": "a", "Value": "1"}]


def test_an_unsynced_write_leaves_every_other_write_synced(store: MetadataStore) -> None:
    """advance_upload commits without waiting for the disk; the pooled connection it used must go
    back to the durable setting for the writes that promise durability."""
    sqlite_db = store.engine.dialect.name == "sqlite"
    setting = "PRAGMA synchronous" if sqlite_db else "SHOW synchronous_commit"
    with store.write() as conn:
        durable = conn.exec_driver_sql(setting).scalar_one()
    repo = store.create_repository(ACCOUNT, "sync/app", NOW)
    store.create_upload("sync-upload", repo.id, NOW)
    for offset in range(5):
        assert store.advance_upload("sync-upload", offset, offset + 1, NOW)
    assert not store.advance_upload("sync-upload", 0, 9, NOW)  # compare-and-set still holds
    assert store.get_upload("sync-upload") == (repo.id, 5)
    with store.write_unsynced() as conn:
        assert conn.exec_driver_sql(setting).scalar_one() == (1 if sqlite_db else "off")  # NORMAL / off
    for _ in range(3):  # whichever pooled connection comes next
        with store.write() as conn:
            assert conn.exec_driver_sql(setting).scalar_one() == durable
    if sqlite_db:
        assert durable == 2  # FULL


def test_purge_settings_drops_only_expired_entries_under_the_prefix(store: MetadataStore) -> None:
    store.put_setting("revoked-token:a", "100")
    store.put_setting("revoked-token:b", "300")
    store.put_setting("revoked-token:c", "garbage")  # not a number: never valid, purged
    store.put_setting("revoked_tokenXd", "1")  # "_" is not a wildcard here
    store.put_setting("other", "1")
    assert store.purge_settings("revoked-token:", 200) == 2
    assert store.get_setting("revoked-token:a") is None and store.get_setting("revoked-token:c") is None
    assert store.get_setting("revoked-token:b") == "300"
    assert store.get_setting("revoked_tokenXd") == "1" and store.get_setting("other") == "1"
    store.put_setting("revoked-token:e", "50")
    assert store.purge_settings("revoked_token:", 200) == 0  # "_" in the prefix is matched literally
    assert store.get_setting("revoked-token:e") == "50"
