"""The metadata store's maintenance queries: garbage collection, lifecycle expiry, accounting.

Each re-checks its conditions inside its own write transaction, so it can race client requests
(see services/gc.py for the protocol; tests/contract/test_gc_races.py proves the pairs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, select

from cargohold.storage.meta import schema as s
from cargohold.storage.meta.base import StoreBase
from cargohold.storage.meta.rows import Repository, repository_of


class MaintenanceQueries(StoreBase):
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
        return [repository_of(row) for row in rows]

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
