"""MetadataStore: every metadata read and write, one implementation for SQLite and PostgreSQL.

Methods are synchronous and each runs in its own transaction unless a connection is passed.
The parts live beside it: transactions (base.py), row types (rows.py), maintenance queries
(maintenance.py), the per-request fast path on SQLite (hot.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from cargohold.errors import Kind, RegistryError
from cargohold.storage.meta import schema as s
from cargohold.storage.meta.maintenance import MaintenanceQueries
from cargohold.storage.meta.rows import (
    MANIFEST_COLS,
    AccessKey,
    ManifestRow,
    NewManifest,
    Repository,
    manifest_of,
    repository_of,
)

__all__ = ["AccessKey", "ManifestRow", "MetadataStore", "NewManifest", "Repository"]


class MetadataStore(MaintenanceQueries):
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

    def purge_settings(self, prefix: str, before: int) -> int:
        """Delete the settings under prefix whose value, a number, is below `before` (expiries)."""
        t = s.settings
        with self.write() as conn:
            rows = conn.execute(select(t.c.key, t.c.value).where(t.c.key.startswith(prefix, autoescape=True))).all()
            stale = [row.key for row in rows if not row.value.isdigit() or int(row.value) < before]
            if stale:
                conn.execute(delete(t).where(t.c.key.in_(stale)))
        return len(stale)

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
            return repository_of(found) if found else None
        with self.read() as conn:
            row = conn.execute(select(s.repositories).where(and_(
                s.repositories.c.account_id == account_id, s.repositories.c.name == name))).first()
        return repository_of(row) if row else None

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
        return [repository_of(row) for row in rows]

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

    def blob_exists(self, digest: str) -> bool:
        return self.blob_size(digest) is not None

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
            return manifest_of(found, with_content) if found else None
        cols = (*MANIFEST_COLS, m.c.content) if with_content else MANIFEST_COLS
        with self.read() as conn:
            row = conn.execute(select(*cols).where(and_(m.c.repository_id == repository_id,
                                                        m.c.digest == digest))).first()
        return manifest_of(row, with_content) if row else None

    def get_manifest_by_tag(self, repository_id: int, tag: str,
                            with_content: bool = True) -> ManifestRow | None:
        if self._hot is not None:
            found = self._hot.manifest_by_tag(repository_id, tag, with_content)
            return manifest_of(found, with_content) if found else None
        m, t = s.manifests, s.tags
        cols = (*MANIFEST_COLS, m.c.content) if with_content else MANIFEST_COLS
        with self.read() as conn:
            row = conn.execute(select(*cols).join(t, and_(t.c.repository_id == m.c.repository_id,
                                                           t.c.digest == m.c.digest))
                               .where(and_(t.c.repository_id == repository_id, t.c.name == tag))).first()
        return manifest_of(row, with_content) if row else None

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
            rows = conn.execute(select(*MANIFEST_COLS).where(and_(
                m.c.repository_id == repository_id, m.c.subject_digest == subject))
                .order_by(m.c.digest)).all()
        return [manifest_of(row) for row in rows]

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
        stmt = select(*MANIFEST_COLS).where(m.c.repository_id == repository_id)
        if after is not None:
            stmt = stmt.where(m.c.digest > after)
        with self.read() as conn:
            rows = conn.execute(stmt.order_by(m.c.digest).limit(limit)).all()
        return [manifest_of(row) for row in rows]

    def manifests_by_digest(self, repository_id: int, digests: Sequence[str],
                            with_content: bool = False) -> dict[str, ManifestRow]:
        m = s.manifests
        cols = (*MANIFEST_COLS, m.c.content) if with_content else MANIFEST_COLS
        with self.read() as conn:
            rows = conn.execute(select(*cols).where(and_(m.c.repository_id == repository_id,
                                                         m.c.digest.in_(list(digests))))).all()
        return {row.digest: manifest_of(row, with_content) for row in rows}

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
