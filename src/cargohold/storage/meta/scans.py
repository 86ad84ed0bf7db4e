"""ScanStore: image scan results (status, inventory, findings) and registry scanning settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, select, update

from cargohold.storage.meta import schema as s
from cargohold.storage.meta.store import MetadataStore, Repository

SCANNING_KEY = "scanning-configuration"


@dataclass(frozen=True)
class ScanRow:
    repository_id: int
    digest: str
    status: str
    description: str | None
    requested_at: int
    completed_at: int | None
    source_updated_at: int | None
    vulndb_generation: str | None
    inventory: dict[str, Any] | None
    findings: list[dict[str, Any]] | None
    severity_counts: dict[str, int] | None


_SUMMARY_COLS = (s.image_scans.c.repository_id, s.image_scans.c.digest, s.image_scans.c.status,
                 s.image_scans.c.description, s.image_scans.c.requested_at, s.image_scans.c.completed_at,
                 s.image_scans.c.source_updated_at, s.image_scans.c.vulndb_generation,
                 s.image_scans.c.severity_counts)


def _row(row: Any, full: bool) -> ScanRow:
    return ScanRow(row.repository_id, row.digest, row.status, row.description, row.requested_at, row.completed_at,
                   row.source_updated_at, row.vulndb_generation, row.inventory if full else None,
                   row.findings if full else None, row.severity_counts)


class ScanStore:
    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta

    def repository(self, repository_id: int) -> Repository | None:
        r = s.repositories
        with self.meta.read() as conn:
            row = conn.execute(select(r.c.account_id, r.c.name).where(r.c.id == repository_id)).first()
        return self.meta.get_repository(row.account_id, row.name) if row else None

    def get(self, repository_id: int, digest: str, full: bool = True) -> ScanRow | None:
        t = s.image_scans
        cols = (*_SUMMARY_COLS, t.c.inventory, t.c.findings) if full else _SUMMARY_COLS
        with self.meta.read() as conn:
            row = conn.execute(select(*cols).where(and_(t.c.repository_id == repository_id,
                                                        t.c.digest == digest))).first()
        return _row(row, full) if row else None

    def summaries(self, repository_id: int, digests: Sequence[str]) -> dict[str, ScanRow]:
        t = s.image_scans
        with self.meta.read() as conn:
            rows = conn.execute(select(*_SUMMARY_COLS).where(and_(
                t.c.repository_id == repository_id, t.c.digest.in_(list(digests))))).all()
        return {row.digest: _row(row, False) for row in rows}

    def start(self, repository_id: int, digest: str, now: int) -> None:
        """Mark a scan IN_PROGRESS (keeping any earlier inventory until the new one is in)."""
        values = {"status": "IN_PROGRESS", "description": "The scan is in progress.", "requested_at": now}
        with self.meta.write() as conn:
            self.meta._upsert(conn, s.image_scans, {"repository_id": repository_id, "digest": digest, **values},
                              ["repository_id", "digest"], values)

    def finish(self, repository_id: int, digest: str, *, status: str, description: str, now: int,
               source_updated_at: int | None = None, generation: str | None = None,
               inventory: dict[str, Any] | None = None, findings: list[dict[str, Any]] | None = None,
               severity_counts: dict[str, int] | None = None) -> None:
        values = {"status": status, "description": description, "completed_at": now,
                  "source_updated_at": source_updated_at, "vulndb_generation": generation,
                  "inventory": inventory, "findings": findings, "severity_counts": severity_counts}
        with self.meta.write() as conn:
            self.meta._upsert(conn, s.image_scans, {"repository_id": repository_id, "digest": digest,
                                                    "requested_at": now, **values},
                              ["repository_id", "digest"], values)

    def rematched(self, repository_id: int, digest: str, *, generation: str, source_updated_at: int | None,
                  findings: list[dict[str, Any]], severity_counts: dict[str, int], now: int) -> bool:
        """New findings for a completed scan's stored inventory (continuous scanning)."""
        t = s.image_scans
        with self.meta.write() as conn:
            return conn.execute(update(t).where(and_(t.c.repository_id == repository_id, t.c.digest == digest,
                                                     t.c.status == "COMPLETE"))
                                .values(vulndb_generation=generation, source_updated_at=source_updated_at,
                                        findings=findings, severity_counts=severity_counts,
                                        completed_at=now)).rowcount > 0

    def completed_in(self, repository_ids: Sequence[int], stale_generation: str) -> list[tuple[int, str]]:
        """(repository id, digest) of completed scans matched against another database generation."""
        t = s.image_scans
        if not repository_ids:
            return []
        with self.meta.read() as conn:
            rows = conn.execute(select(t.c.repository_id, t.c.digest).where(and_(
                t.c.repository_id.in_(list(repository_ids)), t.c.status == "COMPLETE",
                (t.c.vulndb_generation != stale_generation) | t.c.vulndb_generation.is_(None)))).all()
        return [(row.repository_id, row.digest) for row in rows]

    def stuck(self, older_than: int) -> list[tuple[int, str]]:
        t = s.image_scans
        with self.meta.read() as conn:
            rows = conn.execute(select(t.c.repository_id, t.c.digest).where(and_(
                t.c.status == "IN_PROGRESS", t.c.requested_at < older_than))).all()
        return [(row.repository_id, row.digest) for row in rows]

    def prune(self) -> int:
        """Drop results of images that no longer exist."""
        t, m = s.image_scans, s.manifests
        exists = select(m.c.digest).where(and_(m.c.repository_id == t.c.repository_id, m.c.digest == t.c.digest))
        with self.meta.write() as conn:
            return conn.execute(delete(t).where(~exists.exists())).rowcount

    # -- registry scanning configuration (per account, in settings) ------------------------------

    def registry_configuration(self, account_id: str) -> str | None:
        return self.meta.get_setting(f"{SCANNING_KEY}:{account_id}")

    def put_registry_configuration(self, account_id: str, document: str) -> None:
        self.meta.put_setting(f"{SCANNING_KEY}:{account_id}", document)

    def accounts_with_configuration(self) -> list[str]:
        t = s.settings
        with self.meta.read() as conn:
            keys = conn.execute(select(t.c.key).where(t.c.key.like(f"{SCANNING_KEY}:%"))).scalars()
            return [k.split(":", 1)[1] for k in keys]
