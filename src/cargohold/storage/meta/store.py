"""MetadataStore: every metadata read and write, one implementation for SQLite and PostgreSQL.

Methods are synchronous and each runs in its own transaction unless a connection is passed.
Writers open their transaction with `write=True` (SQLite: BEGIN IMMEDIATE).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from cargohold.errors import Kind, RegistryError
from cargohold.storage.meta import schema as s
from cargohold.storage.meta.hot import SqliteHotReads


@dataclass(frozen=True)
class Repository:
    id: int
    account_id: str
    name: str
    created_at: int
    tag_mutability: str
    mutability_exclusions: list[dict[str, str]]
    scan_on_push: bool
    encryption: dict[str, Any] | None
    resource_tags: list[dict[str, str]]
    policy: str | None = None
    lifecycle_policy: str | None = None
    lifecycle_evaluated_at: int | None = None


@dataclass(frozen=True)
class AccessKey:
    key_id: str
    secret_enc: bytes
    status: str
    principal_arn: str
    account_id: str
    principal_kind: str
    principal_name: str
    user_id: str


@dataclass(frozen=True)
class ManifestRow:
    digest: str
    media_type: str
    artifact_type: str | None
    subject_digest: str | None
    config_digest: str | None
    size: int
    image_size: int
    annotations: dict[str, str] | None
    pushed_at: int
    last_pulled_at: int | None
    content: bytes | None = None


@dataclass(frozen=True)
class NewManifest:
    digest: str
    media_type: str
    artifact_type: str | None
    subject_digest: str | None
    config_digest: str | None
    image_size: int
    annotations: dict[str, str] | None
    content: bytes
    blob_refs: Sequence[str]
    manifest_refs: Sequence[str]


_MANIFEST_COLS = (s.manifests.c.digest, s.manifests.c.media_type, s.manifests.c.artifact_type,
                  s.manifests.c.subject_digest, s.manifests.c.config_digest, s.manifests.c.size,
                  s.manifests.c.image_size, s.manifests.c.annotations, s.manifests.c.pushed_at,
                  s.manifests.c.last_pulled_at)


def _repo(row: Any) -> Repository:
    return Repository(row.id, row.account_id, row.name, row.created_at, row.tag_mutability,
                      row.mutability_exclusions or [], bool(row.scan_on_push), row.encryption,
                      row.resource_tags or [], row.policy, row.lifecycle_policy, row.lifecycle_evaluated_at)


def _manifest(row: Any, with_content: bool = False) -> ManifestRow:
    return ManifestRow(row.digest, row.media_type, row.artifact_type, row.subject_digest,
                       row.config_digest, row.size, row.image_size, row.annotations, row.pushed_at,
                       row.last_pulled_at, row.content if with_content else None)


class MetadataStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name
        database = engine.url.database
        # SQLite: the per-request reads skip SQLAlchemy (see hot.py); PostgreSQL keeps the Core path.
        self._hot = SqliteHotReads(database) if self._dialect == "sqlite" and database else None

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(write=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def write_unsynced(self) -> Iterator[Connection]:
        """A write whose commit does not wait for the disk: atomic and visible at once, durable
        against a process crash, but an OS crash may undo it (SQLite synchronous=NORMAL,
        PostgreSQL synchronous_commit=off; neither can corrupt the database).

        For an upload's offset after a PATCH: the chunk's bytes are not fsync'd then either (only
        completion is durable), and a commit that waited for the disk cost 4 ms per chunk."""
        if self._dialect != "sqlite":
            with self.write() as conn:
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                yield conn
            return
        with self.engine.connect().execution_options(write=True) as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with conn.begin():
                    yield conn
            finally:
                raw.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def try_write(self, wait_ms: int = 50) -> Iterator[Connection | None]:
        """A write transaction that gives up (yields None) rather than wait long for SQLite's lock.

        For bookkeeping writes made while serving a read on the event loop: they must never stall
        the loop behind a long writer (a GC sweep, a big commit).
        """
        if self._dialect != "sqlite":
            with self.write() as conn:
                yield conn
            return
        with self.engine.connect().execution_options(write=True) as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
            try:
                try:
                    transaction = conn.begin()
                except OperationalError:
                    yield None
                    return
                with transaction:
                    yield conn
            finally:
                raw.execute("PRAGMA busy_timeout=30000")

    def _insert_ignore(self, conn: Connection, table: Any, values: dict[str, Any]) -> None:
        dialect_insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        conn.execute(dialect_insert(table).values(**values).on_conflict_do_nothing())

    def _upsert(self, conn: Connection, table: Any, values: dict[str, Any], keys: list[str],
                updates: dict[str, Any]) -> None:
        dialect_insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        stmt = dialect_insert(table).values(**values)
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=updates))

    def _lexical(self, column: Any) -> Any:
        """The column compared and ordered byte-wise (what SQLite's BINARY collation does).

        A PostgreSQL database's default collation is usually a natural-language one
        (en_US.UTF-8, ICU) in which "B" < "a" is false and punctuation sorts differently, so
        names would list in a different order than on SQLite and than the spec requires.
        """
        return column.collate("C") if self._dialect == "postgresql" else column

    # -- settings ---------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        if self._hot is not None:
            return self._hot.setting(key)
        with self.read() as conn:
            return conn.execute(select(s.settings.c.value).where(s.settings.c.key == key)).scalar()

    def set_setting_if_absent(self, key: str, value: str) -> str:
        """Store value unless one exists; returns the value in force (first writer wins)."""
        with self.write() as conn:
            self._insert_ignore(conn, s.settings, {"key": key, "value": value})
            return str(conn.execute(select(s.settings.c.value).where(s.settings.c.key == key)).scalar())

    def put_setting(self, key: str, value: str) -> None:
        with self.write() as conn:
            self._upsert(conn, s.settings, {"key": key, "value": value}, ["key"], {"value": value})

    def delete_setting(self, key: str) -> bool:
        with self.write() as conn:
            return conn.execute(delete(s.settings).where(s.settings.c.key == key)).rowcount > 0

    # -- principals and access keys ---------------------------------------------------------

    def ensure_principal(self, arn: str, account_id: str, kind: str, name: str, user_id: str,
                         now: int) -> None:
        with self.write() as conn:
            self._insert_ignore(conn, s.principals, {
                "arn": arn, "account_id": account_id, "kind": kind, "name": name,
                "user_id": user_id, "created_at": now})

    def add_access_key(self, key_id: str, principal_arn: str, secret_enc: bytes, now: int,
                       status: str = "Active") -> None:
        with self.write() as conn:
            conn.execute(insert(s.access_keys).values(
                key_id=key_id, principal_arn=principal_arn, secret_enc=secret_enc, status=status,
                created_at=now))

    def count_access_keys(self, principal_arn: str) -> int:
        with self.read() as conn:
            return int(conn.execute(select(func.count()).select_from(s.access_keys).where(
                s.access_keys.c.principal_arn == principal_arn)).scalar_one())

    def get_access_key(self, key_id: str) -> AccessKey | None:
        k, p = s.access_keys, s.principals
        if self._hot is not None:
            row = self._hot.access_key(key_id)
        else:
            with self.read() as conn:
                row = conn.execute(
                    select(k.c.key_id, k.c.secret_enc, k.c.status, k.c.principal_arn, p.c.account_id,
                           p.c.kind, p.c.name, p.c.user_id)
                    .join(p, p.c.arn == k.c.principal_arn).where(k.c.key_id == key_id)).first()
        if row is None:
            return None
        return AccessKey(row.key_id, row.secret_enc, row.status, row.principal_arn, row.account_id,
                         row.kind, row.name, row.user_id)

    # -- repositories -----------------------------------------------------------------------

    def get_repository(self, account_id: str, name: str) -> Repository | None:
        if self._hot is not None:
            found = self._hot.repository(account_id, name)
            return _repo(found) if found else None
        with self.read() as conn:
            row = conn.execute(select(s.repositories).where(and_(
                s.repositories.c.account_id == account_id, s.repositories.c.name == name))).first()
        return _repo(row) if row else None

    def create_repository(self, account_id: str, name: str, now: int, *,
                          tag_mutability: str = "MUTABLE",
                          mutability_exclusions: list[dict[str, str]] | None = None,
                          scan_on_push: bool = False, encryption: dict[str, Any] | None = None,
                          resource_tags: list[dict[str, str]] | None = None,
                          exist_ok: bool = False) -> Repository:
        try:
            with self.write() as conn:
                conn.execute(insert(s.repositories).values(
                    account_id=account_id, name=name, created_at=now, tag_mutability=tag_mutability,
                    mutability_exclusions=mutability_exclusions, scan_on_push=scan_on_push,
                    encryption=encryption, resource_tags=resource_tags))
        except IntegrityError:
            if not exist_ok:
                raise RegistryError(
                    Kind.REPOSITORY_EXISTS,
                    f"The repository with name '{name}' already exists in the registry with id "
                    f"'{account_id}'") from None
        repo = self.get_repository(account_id, name)
        assert repo is not None
        return repo

    def list_repositories(self, account_id: str, after: str | None, limit: int) -> list[Repository]:
        r = s.repositories
        stmt = select(r).where(r.c.account_id == account_id)
        if after is not None:
            stmt = stmt.where(self._lexical(r.c.name) > after)
        with self.read() as conn:
            rows = conn.execute(stmt.order_by(self._lexical(r.c.name)).limit(limit)).all()
        return [_repo(row) for row in rows]

    def update_repository(self, repository_id: int, **values: Any) -> None:
        with self.write() as conn:
            conn.execute(update(s.repositories).where(s.repositories.c.id == repository_id)
                         .values(**values))

    def delete_repository(self, repository_id: int) -> None:
        with self.write() as conn:
            for table in (s.tags, s.manifest_references, s.manifests, s.repository_blobs, s.uploads):
                conn.execute(delete(table).where(table.c.repository_id == repository_id))
            conn.execute(delete(s.repositories).where(s.repositories.c.id == repository_id))

    def repository_image_count(self, repository_id: int) -> int:
        with self.read() as conn:
            return int(conn.execute(select(func.count()).select_from(s.manifests).where(
                s.manifests.c.repository_id == repository_id)).scalar_one())

    # -- blobs ------------------------------------------------------------------------------

    def repository_blob_size(self, repository_id: int, digest: str) -> int | None:
        found = self.repository_blob(repository_id, digest)
        return None if found is None else found[0]

    def repository_blob(self, repository_id: int, digest: str) -> tuple[int, int] | None:
        """(size, link created_at) of a blob in a repository."""
        rb, b = s.repository_blobs, s.blobs
        if self._hot is not None:
            row = self._hot.repository_blob(repository_id, digest)
            return (int(row.size), int(row.created_at)) if row else None
        with self.read() as conn:
            row = conn.execute(select(b.c.size, rb.c.created_at).join(rb, rb.c.digest == b.c.digest).where(
                and_(rb.c.repository_id == repository_id, rb.c.digest == digest))).first()
        return (int(row.size), int(row.created_at)) if row else None

    def touch_link(self, repository_id: int, digest: str, now: int) -> bool:
        """Best effort: skipped if the write lock is busy (the next HEAD tries again)."""
        rb = s.repository_blobs
        with self.try_write() as conn:
            if conn is None:
                return False
            conn.execute(update(rb).where(and_(rb.c.repository_id == repository_id, rb.c.digest == digest))
                         .values(created_at=now))
            return True

    def blob_size(self, digest: str) -> int | None:
        with self.read() as conn:
            return conn.execute(select(s.blobs.c.size).where(s.blobs.c.digest == digest)).scalar()

    def link_blob(self, repository_id: int, digest: str, size: int, now: int) -> None:
        self.commit_blob(repository_id, digest, size, now, lambda: None)

    def commit_blob(self, repository_id: int, digest: str, size: int, now: int, place: Callable[[], None]) -> None:
        """Record a blob and its link, and put its bytes in place, in one write transaction.

        The garbage collector deletes blobs in a write transaction too, so the two serialize:
        either the collector saw this fresh row and spared the blob, or it finished first and
        `place` finds no file and moves the new bytes in. Refreshing created_at restarts the
        grace window for a blob pushed again.
        """
        with self.write() as conn:
            self._upsert(conn, s.blobs, {"digest": digest, "size": size, "created_at": now}, ["digest"],
                         {"created_at": now})
            self._upsert(conn, s.repository_blobs, {"repository_id": repository_id, "digest": digest,
                                                    "created_at": now},
                         ["repository_id", "digest"], {"created_at": now})
            place()

    def mount_blob(self, source_id: int, target_id: int, digest: str, now: int) -> int | None:
        """Link a blob readable in source into target, atomically with checking the source link."""
        rb, b = s.repository_blobs, s.blobs
        with self.write() as conn:
            size = conn.execute(select(b.c.size).join(rb, rb.c.digest == b.c.digest).where(
                and_(rb.c.repository_id == source_id, rb.c.digest == digest)).with_for_update(read=True)).scalar()
            if size is None:
                return None
            self._upsert(conn, rb, {"repository_id": target_id, "digest": digest, "created_at": now},
                         ["repository_id", "digest"], {"created_at": now})
            return int(size)

    def unlink_blob(self, repository_id: int, digest: str) -> bool:
        rb = s.repository_blobs
        with self.write() as conn:
            result = conn.execute(delete(rb).where(and_(rb.c.repository_id == repository_id,
                                                        rb.c.digest == digest)))
            return result.rowcount > 0

    # -- upload sessions --------------------------------------------------------------------

    def create_upload(self, upload_id: str, repository_id: int, now: int) -> None:
        with self.write() as conn:
            conn.execute(insert(s.uploads).values(id=upload_id, repository_id=repository_id, offset=0,
                                                  created_at=now, updated_at=now))

    def get_upload(self, upload_id: str) -> tuple[int, int] | None:
        """(repository_id, offset) of an upload session."""
        u = s.uploads
        with self.read() as conn:
            row = conn.execute(select(u.c.repository_id, u.c.offset).where(u.c.id == upload_id)).first()
        return (row.repository_id, row.offset) if row else None

    def advance_upload(self, upload_id: str, expected: int, offset: int, now: int) -> bool:
        """Compare-and-set the offset: False when another request moved it meanwhile."""
        u = s.uploads
        with self.write_unsynced() as conn:
            result = conn.execute(update(u).where(and_(u.c.id == upload_id, u.c.offset == expected))
                                  .values(offset=offset, updated_at=now))
            return result.rowcount == 1

    def delete_upload(self, upload_id: str) -> bool:
        with self.write() as conn:
            return conn.execute(delete(s.uploads).where(s.uploads.c.id == upload_id)).rowcount > 0

    def stale_uploads(self, older_than: int, limit: int = 1000) -> list[str]:
        u = s.uploads
        with self.read() as conn:
            return list(conn.execute(select(u.c.id).where(u.c.updated_at < older_than).limit(limit))
                        .scalars())

    # -- manifests and tags -----------------------------------------------------------------

    def get_manifest(self, repository_id: int, digest: str, with_content: bool = True) -> ManifestRow | None:
        m = s.manifests
        if self._hot is not None:
            found = self._hot.manifest(repository_id, digest, with_content)
            return _manifest(found, with_content) if found else None
        cols = (*_MANIFEST_COLS, m.c.content) if with_content else _MANIFEST_COLS
        with self.read() as conn:
            row = conn.execute(select(*cols).where(and_(m.c.repository_id == repository_id,
                                                        m.c.digest == digest))).first()
        return _manifest(row, with_content) if row else None

    def get_manifest_by_tag(self, repository_id: int, tag: str,
                            with_content: bool = True) -> ManifestRow | None:
        if self._hot is not None:
            found = self._hot.manifest_by_tag(repository_id, tag, with_content)
            return _manifest(found, with_content) if found else None
        m, t = s.manifests, s.tags
        cols = (*_MANIFEST_COLS, m.c.content) if with_content else _MANIFEST_COLS
        with self.read() as conn:
            row = conn.execute(select(*cols).join(t, and_(t.c.repository_id == m.c.repository_id,
                                                           t.c.digest == m.c.digest))
                               .where(and_(t.c.repository_id == repository_id, t.c.name == tag))).first()
        return _manifest(row, with_content) if row else None

    def tag_digest(self, repository_id: int, tag: str) -> str | None:
        t = s.tags
        with self.read() as conn:
            return conn.execute(select(t.c.digest).where(and_(t.c.repository_id == repository_id,
                                                              t.c.name == tag))).scalar()

    def put_manifest(self, repository_id: int, new: NewManifest, tag: str | None, now: int) -> None:
        """Store a manifest (and move a tag to it) once every reference exists in the repository.

        The reference check and the insert share one write transaction, so a concurrent
        deletion of a referenced blob cannot slip between them: SQLite's BEGIN IMMEDIATE
        serializes writers; on PostgreSQL (READ COMMITTED) the referenced rows are read FOR
        SHARE, which waits for an uncommitted delete and then no longer finds the row.
        Manifests are locked before blobs, the order delete_repository deletes them in.
        """
        rb, m = s.repository_blobs, s.manifests
        with self.write() as conn:
            have_manifests: set[str] = set()
            have_blobs: set[str] = set()
            if new.manifest_refs:
                have_manifests = set(conn.execute(select(m.c.digest).where(and_(
                    m.c.repository_id == repository_id, m.c.digest.in_(list(new.manifest_refs))))
                    .with_for_update(read=True)).scalars())
            if new.blob_refs:
                have_blobs = set(conn.execute(select(rb.c.digest).where(and_(
                    rb.c.repository_id == repository_id, rb.c.digest.in_(list(new.blob_refs))))
                    .with_for_update(read=True)).scalars())
            missing_blobs = [d for d in new.blob_refs if d not in have_blobs]
            missing_manifests = [d for d in new.manifest_refs if d not in have_manifests]
            missing = missing_blobs + missing_manifests
            if missing:
                raise RegistryError(Kind.MANIFEST_BLOB_UNKNOWN,
                                    f"manifest references unknown blobs or manifests: {', '.join(missing[:10])}",
                                    detail={"missing": missing, "blobs": missing_blobs,
                                            "manifests": missing_manifests})
            self._insert_ignore(conn, m, {
                "repository_id": repository_id, "digest": new.digest, "media_type": new.media_type,
                "artifact_type": new.artifact_type, "subject_digest": new.subject_digest,
                "config_digest": new.config_digest, "size": len(new.content),
                "image_size": new.image_size, "annotations": new.annotations,
                "content": new.content, "pushed_at": now, "last_pulled_at": None})
            refs = [{"repository_id": repository_id, "parent_digest": new.digest, "child_digest": d,
                     "kind": "blob"} for d in new.blob_refs]
            refs += [{"repository_id": repository_id, "parent_digest": new.digest, "child_digest": d,
                      "kind": "manifest"} for d in new.manifest_refs]
            for ref in refs:
                self._insert_ignore(conn, s.manifest_references, ref)
            if tag is not None:
                self._upsert(conn, s.tags, {"repository_id": repository_id, "name": tag,
                                            "digest": new.digest, "updated_at": now},
                             ["repository_id", "name"], {"digest": new.digest, "updated_at": now})

    def delete_manifest(self, repository_id: int, digest: str) -> bool:
        m, t, r = s.manifests, s.tags, s.manifest_references
        with self.write() as conn:
            gone = conn.execute(delete(m).where(and_(m.c.repository_id == repository_id,
                                                     m.c.digest == digest))).rowcount
            conn.execute(delete(t).where(and_(t.c.repository_id == repository_id, t.c.digest == digest)))
            conn.execute(delete(r).where(and_(r.c.repository_id == repository_id,
                                              r.c.parent_digest == digest)))
            return gone > 0

    def delete_tag(self, repository_id: int, tag: str) -> bool:
        t = s.tags
        with self.write() as conn:
            return conn.execute(delete(t).where(and_(t.c.repository_id == repository_id,
                                                     t.c.name == tag))).rowcount > 0

    def list_tags(self, repository_id: int, after: str | None, limit: int) -> list[str]:
        t = s.tags
        stmt = select(t.c.name).where(t.c.repository_id == repository_id)
        if after is not None:
            stmt = stmt.where(self._lexical(t.c.name) > after)
        with self.read() as conn:
            return list(conn.execute(stmt.order_by(self._lexical(t.c.name)).limit(limit)).scalars())

    def tags_of(self, repository_id: int, digests: Sequence[str]) -> dict[str, list[str]]:
        t = s.tags
        out: dict[str, list[str]] = {d: [] for d in digests}
        with self.read() as conn:
            for row in conn.execute(select(t.c.digest, t.c.name).where(and_(
                    t.c.repository_id == repository_id, t.c.digest.in_(list(digests))))
                    .order_by(self._lexical(t.c.name))):
                out[row.digest].append(row.name)
        return out

    def referrers(self, repository_id: int, subject: str) -> list[ManifestRow]:
        m = s.manifests
        with self.read() as conn:
            rows = conn.execute(select(*_MANIFEST_COLS).where(and_(
                m.c.repository_id == repository_id, m.c.subject_digest == subject))
                .order_by(m.c.digest)).all()
        return [_manifest(row) for row in rows]

    def record_pull(self, repository_id: int, digest: str, now: int) -> bool:
        """Best effort (lastRecordedPullTime is approximate): skipped if the write lock is busy."""
        m = s.manifests
        with self.try_write() as conn:
            if conn is None:
                return False
            conn.execute(update(m).where(and_(m.c.repository_id == repository_id, m.c.digest == digest))
                         .values(last_pulled_at=now))
            return True

    # -- image listings (ECR face) ----------------------------------------------------------

    def list_manifests(self, repository_id: int, after: str | None, limit: int) -> list[ManifestRow]:
        """Manifests of a repository in digest order, after a cursor digest."""
        m = s.manifests
        stmt = select(*_MANIFEST_COLS).where(m.c.repository_id == repository_id)
        if after is not None:
            stmt = stmt.where(m.c.digest > after)
        with self.read() as conn:
            rows = conn.execute(stmt.order_by(m.c.digest).limit(limit)).all()
        return [_manifest(row) for row in rows]

    def manifests_by_digest(self, repository_id: int, digests: Sequence[str],
                            with_content: bool = False) -> dict[str, ManifestRow]:
        m = s.manifests
        cols = (*_MANIFEST_COLS, m.c.content) if with_content else _MANIFEST_COLS
        with self.read() as conn:
            rows = conn.execute(select(*cols).where(and_(m.c.repository_id == repository_id,
                                                         m.c.digest.in_(list(digests))))).all()
        return {row.digest: _manifest(row, with_content) for row in rows}

    def tag_map(self, repository_id: int, tags: Sequence[str]) -> dict[str, str]:
        t = s.tags
        with self.read() as conn:
            rows = conn.execute(select(t.c.name, t.c.digest).where(and_(
                t.c.repository_id == repository_id, t.c.name.in_(list(tags))))).all()
        return {row.name: row.digest for row in rows}

    def parents_of(self, repository_id: int, digest: str) -> list[str]:
        """Manifests (e.g. indexes) in the repository that reference this manifest as a child."""
        r = s.manifest_references
        with self.read() as conn:
            return list(conn.execute(select(r.c.parent_digest).where(and_(
                r.c.repository_id == repository_id, r.c.child_digest == digest,
                r.c.kind == "manifest"))).scalars())

    def repository_blob_sizes(self, repository_id: int, digests: Sequence[str]) -> dict[str, int]:
        rb, b = s.repository_blobs, s.blobs
        with self.read() as conn:
            rows = conn.execute(select(b.c.digest, b.c.size).join(rb, rb.c.digest == b.c.digest).where(
                and_(rb.c.repository_id == repository_id, rb.c.digest.in_(list(digests))))).all()
        return {row.digest: row.size for row in rows}

    def set_upload_part(self, upload_id: str, last_part_size: int) -> None:
        with self.write() as conn:
            conn.execute(update(s.uploads).where(s.uploads.c.id == upload_id)
                         .values(last_part_size=last_part_size))

    def upload_last_part(self, upload_id: str) -> int | None:
        u = s.uploads
        with self.read() as conn:
            return conn.execute(select(u.c.last_part_size).where(u.c.id == upload_id)).scalar()

    # -- garbage collection -------------------------------------------------------------------

    def stale_links(self, cutoff: int, limit: int) -> list[tuple[int, str]]:
        """Repository links older than cutoff that no manifest of that repository references."""
        rb, r = s.repository_blobs, s.manifest_references
        referenced = select(r.c.child_digest).where(and_(
            r.c.repository_id == rb.c.repository_id, r.c.child_digest == rb.c.digest, r.c.kind == "blob"))
        with self.read() as conn:
            rows = conn.execute(select(rb.c.repository_id, rb.c.digest).where(and_(
                rb.c.created_at < cutoff, ~referenced.exists())).limit(limit)).all()
        return [(row.repository_id, row.digest) for row in rows]

    def drop_links(self, links: Sequence[tuple[int, str]], cutoff: int) -> int:
        """Delete the given links if they are still old and unreferenced (re-checked under the write lock)."""
        rb, r = s.repository_blobs, s.manifest_references
        dropped = 0
        with self.write() as conn:
            for repository_id, digest in links:
                # Lock the link first, then look for references in a statement of its own. On
                # PostgreSQL a DELETE checking NOT EXISTS in its WHERE would wait for a manifest PUT
                # holding the link FOR SHARE and then delete it anyway: the subquery keeps the
                # snapshot taken before the wait, without the references that PUT committed.
                link = and_(rb.c.repository_id == repository_id, rb.c.digest == digest)
                if conn.execute(select(rb.c.digest).where(and_(link, rb.c.created_at < cutoff))
                                .with_for_update()).first() is None:
                    continue
                if conn.execute(select(r.c.child_digest).where(and_(
                        r.c.repository_id == repository_id, r.c.child_digest == digest, r.c.kind == "blob"))
                        .limit(1)).first() is not None:
                    continue
                dropped += conn.execute(delete(rb).where(link)).rowcount
        return dropped

    def orphan_blobs(self, cutoff: int, limit: int) -> list[str]:
        """Blobs older than cutoff that no repository links to any more."""
        b, rb = s.blobs, s.repository_blobs
        linked = select(rb.c.digest).where(rb.c.digest == b.c.digest)
        with self.read() as conn:
            return list(conn.execute(select(b.c.digest).where(and_(b.c.created_at < cutoff, ~linked.exists()))
                                     .limit(limit)).scalars())

    def delete_blobs(self, digests: Sequence[str], cutoff: int,
                     remove: Callable[[str], object]) -> list[tuple[str, int]]:
        """Delete orphan blob rows, calling remove(digest) for each inside the same write transaction."""
        b, rb = s.blobs, s.repository_blobs
        with self.write() as conn:
            rows = conn.execute(select(b.c.digest, b.c.size).where(and_(b.c.digest.in_(list(digests)),
                                                                        b.c.created_at < cutoff))
                                .with_for_update()).all()
            candidates = [row.digest for row in rows]
            # A fresh statement sees links committed since the candidates were chosen.
            linked = set(conn.execute(select(rb.c.digest).where(rb.c.digest.in_(candidates))).scalars()) \
                if candidates else set()
            victims = [(row.digest, int(row.size)) for row in rows if row.digest not in linked]
            for digest, _ in victims:
                remove(digest)
            if victims:
                conn.execute(delete(b).where(b.c.digest.in_([d for d, _ in victims])))
        return victims

    def blob_exists(self, digest: str) -> bool:
        return self.blob_size(digest) is not None

    def purge_uploads(self, upload_ids: Sequence[str]) -> int:
        if not upload_ids:
            return 0
        with self.write() as conn:
            return conn.execute(delete(s.uploads).where(s.uploads.c.id.in_(list(upload_ids)))).rowcount

    def upload_ids(self) -> set[str]:
        with self.read() as conn:
            return set(conn.execute(select(s.uploads.c.id)).scalars())

    def storage_totals(self) -> tuple[int, int]:
        """(blob count, bytes) registry-wide after deduplication."""
        b = s.blobs
        with self.read() as conn:
            row = conn.execute(select(func.count(), func.coalesce(func.sum(b.c.size), 0))).one()
        return int(row[0]), int(row[1])

    def remove_unrecorded(self, digests: Sequence[str], remove: Callable[[str], object]) -> list[str]:
        """Call remove(digest) for files that have no blob row, re-checked under the write lock."""
        b = s.blobs
        with self.write() as conn:
            if self._dialect == "postgresql" and digests:
                # A row lock cannot cover a row that does not exist yet: without this, commit_blob
                # could insert the row and keep the file (already in place) while this trashes it.
                # SHARE ROW EXCLUSIVE waits for uncommitted inserts and holds new ones off until commit
                # (SQLite's BEGIN IMMEDIATE already serializes the two).
                conn.exec_driver_sql("LOCK TABLE blobs IN SHARE ROW EXCLUSIVE MODE")
            recorded = set(conn.execute(select(b.c.digest).where(b.c.digest.in_(list(digests)))).scalars()) \
                if digests else set()
            gone = [d for d in digests if d not in recorded]
            for digest in gone:
                remove(digest)
        return gone

    # -- lifecycle ------------------------------------------------------------------------------

    def repositories_with_lifecycle(self) -> list[Repository]:
        r = s.repositories
        with self.read() as conn:
            rows = conn.execute(select(r).where(r.c.lifecycle_policy.is_not(None)).order_by(r.c.id)).all()
        return [_repo(row) for row in rows]

    def expire_manifest(self, repository_id: int, digest: str, started_at: int) -> bool:
        """Delete an image chosen by a lifecycle run, unless it was pushed or (re)tagged after the run began."""
        m, t, r = s.manifests, s.tags, s.manifest_references
        with self.write() as conn:
            pushed = conn.execute(select(m.c.pushed_at).where(and_(m.c.repository_id == repository_id,
                                                                   m.c.digest == digest))).scalar()
            if pushed is None or pushed > started_at:
                return False
            retagged = conn.execute(select(func.count()).select_from(t).where(and_(
                t.c.repository_id == repository_id, t.c.digest == digest, t.c.updated_at > started_at))).scalar_one()
            parents = conn.execute(select(func.count()).select_from(r).where(and_(
                r.c.repository_id == repository_id, r.c.child_digest == digest, r.c.kind == "manifest"))).scalar_one()
            if retagged or parents:
                return False
            conn.execute(delete(t).where(and_(t.c.repository_id == repository_id, t.c.digest == digest)))
            conn.execute(delete(r).where(and_(r.c.repository_id == repository_id, r.c.parent_digest == digest)))
            conn.execute(delete(m).where(and_(m.c.repository_id == repository_id, m.c.digest == digest)))
            return True

    def save_preview(self, repository_id: int, policy: str, status: str, results: list[dict[str, Any]] | None,
                     now: int) -> None:
        with self.write() as conn:
            self._upsert(conn, s.lifecycle_previews, {"repository_id": repository_id, "policy": policy,
                                                      "status": status, "results": results, "created_at": now},
                         ["repository_id"], {"policy": policy, "status": status, "results": results,
                                             "created_at": now})

    def get_preview(self, repository_id: int) -> tuple[str, str, list[dict[str, Any]] | None] | None:
        p = s.lifecycle_previews
        with self.read() as conn:
            row = conn.execute(select(p.c.policy, p.c.status, p.c.results)
                               .where(p.c.repository_id == repository_id)).first()
        return (row.policy, row.status, row.results) if row else None

    def preview_started_at(self, repository_id: int) -> int | None:
        p = s.lifecycle_previews
        with self.read() as conn:
            return conn.execute(select(p.c.created_at).where(p.c.repository_id == repository_id)).scalar()

    # -- storage accounting -------------------------------------------------------------------

    def repository_usage(self) -> list[dict[str, Any]]:
        """Per repository: images, stored bytes (its blobs, shared or not) and the bytes it alone holds."""
        r, rb, b, m = s.repositories, s.repository_blobs, s.blobs, s.manifests
        other = rb.alias("other")
        alone = select(other.c.digest).where(and_(other.c.digest == rb.c.digest,
                                                  other.c.repository_id != rb.c.repository_id))
        with self.read() as conn:
            stored = {row.repository_id: (int(row.bytes or 0), int(row.blobs)) for row in conn.execute(
                select(rb.c.repository_id, func.sum(b.c.size).label("bytes"), func.count().label("blobs"))
                .join(b, b.c.digest == rb.c.digest).group_by(rb.c.repository_id))}
            exclusive = {row.repository_id: int(row.bytes or 0) for row in conn.execute(
                select(rb.c.repository_id, func.sum(b.c.size).label("bytes")).join(b, b.c.digest == rb.c.digest)
                .where(~alone.exists()).group_by(rb.c.repository_id))}
            images = {row.repository_id: (int(row.images), int(row.manifest_bytes or 0), row.last_push)
                      for row in conn.execute(select(m.c.repository_id, func.count().label("images"),
                                                     func.sum(m.c.size).label("manifest_bytes"),
                                                     func.max(m.c.pushed_at).label("last_push"))
                                              .group_by(m.c.repository_id))}
            repos = conn.execute(select(r.c.id, r.c.account_id, r.c.name).order_by(r.c.account_id, r.c.name)).all()
        out = []
        for repo in repos:
            count, manifest_bytes, last_push = images.get(repo.id, (0, 0, None))
            blob_bytes, blob_count = stored.get(repo.id, (0, 0))
            out.append({"account_id": repo.account_id, "repository": repo.name, "images": count,
                        "blobs": blob_count, "stored_bytes": blob_bytes + manifest_bytes,
                        "exclusive_bytes": exclusive.get(repo.id, 0) + manifest_bytes, "last_push": last_push})
        return out
