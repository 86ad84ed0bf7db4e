"""Usage metering rows: transfer counters per hour, and storage samples per repository.

Transfer counters are added to (never overwritten), so several worker processes or nodes can
flush their in-process counts for the same bucket. Storage samples are written only when a
repository's figures change, so a quiet registry costs no rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from cargohold.domain.cost import split_evenly
from cargohold.storage.meta import schema as s
from cargohold.storage.meta.store import MetadataStore

RepoKey = tuple[str, str]  # (account_id, repository name)


@dataclass(frozen=True)
class TransferRow:
    hour: int
    account_id: str
    repository: str
    principal_arn: str
    direction: str  # pull | push
    network: str  # same_region | internet
    bytes: int
    requests: int


@dataclass(frozen=True)
class StorageFigures:
    billed_bytes: int  # shared blobs split evenly among the repositories holding them
    stored_bytes: int  # every blob it links, in full, plus its manifests
    shared_bytes: int  # the blob bytes it shares with at least one other repository


@dataclass(frozen=True)
class StorageSample:
    hour: int
    figures: StorageFigures


class MeteringStore:
    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta

    def _insert(self, table: Any) -> Any:
        dialect_insert = postgresql.insert if self.meta.engine.dialect.name == "postgresql" else sqlite.insert
        return dialect_insert(table)

    # -- transfer ---------------------------------------------------------------------------------

    def add_transfer(self, rows: Sequence[TransferRow]) -> None:
        """Add counts to their buckets (one write transaction)."""
        if not rows:
            return
        t = s.usage_transfer
        stmt = self._insert(t)
        stmt = stmt.on_conflict_do_update(
            index_elements=["hour", "account_id", "repository", "principal_arn", "direction", "network"],
            set_={"bytes": t.c.bytes + stmt.excluded.bytes, "requests": t.c.requests + stmt.excluded.requests})
        # Rows in key order: two nodes flushing at once lock the same buckets in the same order.
        ordered = sorted(rows, key=lambda r: (r.hour, r.account_id, r.repository, r.principal_arn, r.direction,
                                              r.network))
        with self.meta.write() as conn:
            for row in ordered:
                conn.execute(stmt, row.__dict__)

    def transfer(self, account_id: str, start: int, end: int) -> list[TransferRow]:
        """The account's transfer buckets with start <= hour < end."""
        t = s.usage_transfer
        with self.meta.read() as conn:
            rows = conn.execute(select(t).where(and_(t.c.account_id == account_id, t.c.hour >= start,
                                                     t.c.hour < end))).all()
        return [TransferRow(r.hour, r.account_id, r.repository, r.principal_arn, r.direction, r.network,
                            int(r.bytes), int(r.requests)) for r in rows]

    # -- storage ----------------------------------------------------------------------------------

    def storage_now(self) -> dict[RepoKey, StorageFigures]:
        """Every repository's figures now, registry-wide (sharing crosses accounts).

        A blob linked by n repositories is billed n times 1/n: the billed bytes of all
        repositories add up to what the registry stores once (plus manifests, which are per repository).
        """
        with self.meta.read() as conn:
            return _storage_now(conn)

    def latest_samples(self) -> dict[RepoKey, StorageSample]:
        u = s.usage_storage
        last = (select(u.c.account_id, u.c.repository, func.max(u.c.hour).label("hour"))
                .group_by(u.c.account_id, u.c.repository).subquery())
        with self.meta.read() as conn:
            rows = conn.execute(select(u).join(last, and_(
                u.c.account_id == last.c.account_id, u.c.repository == last.c.repository,
                u.c.hour == last.c.hour))).all()
        return {(r.account_id, r.repository): _sample(r) for r in rows}

    def put_samples(self, hour: int, figures: dict[RepoKey, StorageFigures]) -> None:
        """Record the figures as the samples for this hour (a later sample in the same hour replaces it)."""
        if not figures:
            return
        u = s.usage_storage
        stmt = self._insert(u)
        stmt = stmt.on_conflict_do_update(
            index_elements=["account_id", "repository", "hour"],
            set_={"billed_bytes": stmt.excluded.billed_bytes, "stored_bytes": stmt.excluded.stored_bytes,
                  "shared_bytes": stmt.excluded.shared_bytes})
        with self.meta.write() as conn:
            for (account, name), fig in sorted(figures.items()):
                conn.execute(stmt, {"account_id": account, "repository": name, "hour": hour,
                                    "billed_bytes": fig.billed_bytes, "stored_bytes": fig.stored_bytes,
                                    "shared_bytes": fig.shared_bytes})

    def samples(self, account_id: str, start: int, end: int) -> dict[str, list[StorageSample]]:
        """Per repository of the account: samples with start <= hour < end, preceded by the one in force at start."""
        u = s.usage_storage
        before = (select(u.c.repository, func.max(u.c.hour).label("hour"))
                  .where(and_(u.c.account_id == account_id, u.c.hour < start))
                  .group_by(u.c.repository).subquery())
        with self.meta.read() as conn:
            rows = list(conn.execute(select(u).join(before, and_(
                u.c.repository == before.c.repository, u.c.hour == before.c.hour))
                .where(u.c.account_id == account_id)))
            rows += conn.execute(select(u).where(and_(u.c.account_id == account_id, u.c.hour >= start,
                                                      u.c.hour < end))).all()
        out: dict[str, list[StorageSample]] = defaultdict(list)
        for r in sorted(rows, key=lambda r: (r.repository, r.hour)):
            out[r.repository].append(_sample(r))
        return dict(out)


def _sample(r: Any) -> StorageSample:
    return StorageSample(int(r.hour), StorageFigures(int(r.billed_bytes), int(r.stored_bytes), int(r.shared_bytes)))


def _storage_now(conn: Connection) -> dict[RepoKey, StorageFigures]:
    r, rb, b, m = s.repositories, s.repository_blobs, s.blobs, s.manifests
    holders = select(rb.c.digest, func.count().label("n")).group_by(rb.c.digest).subquery()
    names = {row.id: (row.account_id, row.name) for row in conn.execute(select(r.c.id, r.c.account_id, r.c.name))}
    manifest_bytes = {row.repository_id: int(row.bytes or 0) for row in conn.execute(
        select(m.c.repository_id, func.sum(m.c.size).label("bytes")).group_by(m.c.repository_id))}
    exclusive = {row.repository_id: int(row.bytes or 0) for row in conn.execute(
        select(rb.c.repository_id, func.sum(b.c.size).label("bytes"))
        .join(b, b.c.digest == rb.c.digest).join(holders, holders.c.digest == rb.c.digest)
        .where(holders.c.n == 1).group_by(rb.c.repository_id))}
    shared: dict[int, int] = defaultdict(int)
    billed_share: dict[int, int] = defaultdict(int)
    current: str | None = None
    group: list[int] = []
    size = 0

    def settle() -> None:
        for repo_id, part in zip(group, split_evenly(size, len(group)), strict=True):
            shared[repo_id] += size
            billed_share[repo_id] += part

    for row in conn.execute(select(rb.c.digest, rb.c.repository_id, b.c.size)
                            .join(b, b.c.digest == rb.c.digest).join(holders, holders.c.digest == rb.c.digest)
                            .where(holders.c.n > 1).order_by(rb.c.digest, rb.c.repository_id)):
        if row.digest != current:
            settle()
            current, group, size = row.digest, [], int(row.size)
        group.append(row.repository_id)
    settle()
    out: dict[RepoKey, StorageFigures] = {}
    for repo_id, key in names.items():
        own = manifest_bytes.get(repo_id, 0) + exclusive.get(repo_id, 0)
        out[key] = StorageFigures(own + billed_share.get(repo_id, 0), own + shared.get(repo_id, 0),
                                  shared.get(repo_id, 0))
    return out
