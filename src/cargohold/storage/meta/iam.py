"""IamStore: users, groups, access keys, managed and inline policies, and the audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from sqlalchemy import and_, delete, func, insert, literal, select, union_all, update
from sqlalchemy.exc import IntegrityError

from cargohold.storage.meta import schema as s
from cargohold.storage.meta.store import MetadataStore


@dataclass(frozen=True)
class UserRow:
    arn: str
    account_id: str
    kind: str
    name: str
    user_id: str
    path: str
    created_at: int
    tags: list[dict[str, str]]


@dataclass(frozen=True)
class GroupRow:
    arn: str
    name: str
    group_id: str
    path: str
    created_at: int


@dataclass(frozen=True)
class PolicyRow:
    arn: str
    name: str
    policy_id: str
    path: str
    description: str | None
    document: str
    created_at: int
    updated_at: int
    attachment_count: int


@dataclass(frozen=True)
class KeyRow:
    key_id: str
    principal_arn: str
    status: str
    created_at: int


@dataclass(frozen=True)
class AuditEvent:
    at: int
    request_id: str
    principal_arn: str
    action: str
    resource: str
    source_ip: str
    endpoint_id: str
    allowed: bool
    reason: str
    policy: str | None
    statement: str | None


_AUDIT_FIELDS = tuple(AuditEvent.__dataclass_fields__)
_audit_values = attrgetter(*_AUDIT_FIELDS)


class Conflict(Exception):
    """The row exists already (unique key)."""


def _user(row: Any) -> UserRow:
    return UserRow(row.arn, row.account_id, row.kind, row.name, row.user_id, row.path, row.created_at,
                   row.tags or [])


class IamStore:
    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta

    # -- users ------------------------------------------------------------------------------

    def create_user(self, arn: str, account_id: str, name: str, user_id: str, path: str, now: int,
                    tags: list[dict[str, str]] | None) -> UserRow:
        p = s.principals
        try:
            with self.meta.write() as conn:
                exists = conn.execute(select(p.c.arn).where(and_(
                    p.c.account_id == account_id, p.c.kind == "user", p.c.name == name))).first()
                if exists:
                    raise Conflict(name)
                conn.execute(insert(p).values(arn=arn, account_id=account_id, kind="user", name=name,
                                              user_id=user_id, path=path, created_at=now, tags=tags))
        except IntegrityError:
            raise Conflict(name) from None
        user = self.get_user(account_id, name)
        assert user is not None
        return user

    def get_user(self, account_id: str, name: str) -> UserRow | None:
        p = s.principals
        with self.meta.read() as conn:
            row = conn.execute(select(p).where(and_(p.c.account_id == account_id, p.c.kind == "user",
                                                    p.c.name == name))).first()
        return _user(row) if row else None

    def get_principal(self, arn: str) -> UserRow | None:
        with self.meta.read() as conn:
            row = conn.execute(select(s.principals).where(s.principals.c.arn == arn)).first()
        return _user(row) if row else None

    def list_users(self, account_id: str, path_prefix: str, after: str | None, limit: int) -> list[UserRow]:
        p = s.principals
        stmt = select(p).where(and_(p.c.account_id == account_id, p.c.kind == "user",
                                    p.c.path.startswith(path_prefix, autoescape=True)))
        if after is not None:
            stmt = stmt.where(self.meta._lexical(p.c.name) > after)
        with self.meta.read() as conn:
            return [_user(r) for r in conn.execute(stmt.order_by(self.meta._lexical(p.c.name)).limit(limit))]

    def user_dependencies(self, arn: str) -> dict[str, int]:
        """What still hangs on a user: IAM refuses to delete it until these are gone."""
        with self.meta.read() as conn:
            def count(table: Any, column: Any) -> int:
                return int(conn.execute(select(func.count()).select_from(table).where(column == arn)).scalar_one())
            return {"access keys": count(s.access_keys, s.access_keys.c.principal_arn),
                    "inline policies": count(s.inline_policies, s.inline_policies.c.owner_arn),
                    "attached policies": count(s.policy_attachments, s.policy_attachments.c.owner_arn),
                    "groups": count(s.group_members, s.group_members.c.user_arn)}

    def delete_principal(self, arn: str) -> None:
        with self.meta.write() as conn:
            conn.execute(delete(s.principals).where(s.principals.c.arn == arn))

    # -- access keys ------------------------------------------------------------------------

    def list_keys(self, principal_arn: str) -> list[KeyRow]:
        k = s.access_keys
        with self.meta.read() as conn:
            rows = conn.execute(select(k.c.key_id, k.c.principal_arn, k.c.status, k.c.created_at)
                                .where(k.c.principal_arn == principal_arn).order_by(k.c.created_at)).all()
        return [KeyRow(r.key_id, r.principal_arn, r.status, r.created_at) for r in rows]

    def set_key_status(self, principal_arn: str, key_id: str, status: str) -> bool:
        k = s.access_keys
        with self.meta.write() as conn:
            return conn.execute(update(k).where(and_(k.c.key_id == key_id, k.c.principal_arn == principal_arn))
                                .values(status=status)).rowcount > 0

    def delete_key(self, principal_arn: str, key_id: str) -> bool:
        k = s.access_keys
        with self.meta.write() as conn:
            return conn.execute(delete(k).where(and_(k.c.key_id == key_id,
                                                     k.c.principal_arn == principal_arn))).rowcount > 0

    # -- groups -----------------------------------------------------------------------------

    def create_group(self, arn: str, account_id: str, name: str, group_id: str, path: str, now: int) -> GroupRow:
        try:
            with self.meta.write() as conn:
                conn.execute(insert(s.iam_groups).values(arn=arn, account_id=account_id, name=name,
                                                         group_id=group_id, path=path, created_at=now))
        except IntegrityError:
            raise Conflict(name) from None
        group = self.get_group(account_id, name)
        assert group is not None
        return group

    def get_group(self, account_id: str, name: str) -> GroupRow | None:
        g = s.iam_groups
        with self.meta.read() as conn:
            row = conn.execute(select(g).where(and_(g.c.account_id == account_id, g.c.name == name))).first()
        return GroupRow(row.arn, row.name, row.group_id, row.path, row.created_at) if row else None

    def add_member(self, group_arn: str, user_arn: str) -> None:
        with self.meta.write() as conn:
            self.meta._insert_ignore(conn, s.group_members, {"group_arn": group_arn, "user_arn": user_arn})

    def remove_member(self, group_arn: str, user_arn: str) -> bool:
        m = s.group_members
        with self.meta.write() as conn:
            return conn.execute(delete(m).where(and_(m.c.group_arn == group_arn,
                                                     m.c.user_arn == user_arn))).rowcount > 0

    # -- policies ---------------------------------------------------------------------------

    def put_inline(self, owner_arn: str, name: str, document: str) -> None:
        with self.meta.write() as conn:
            self.meta._upsert(conn, s.inline_policies, {"owner_arn": owner_arn, "name": name, "document": document},
                              ["owner_arn", "name"], {"document": document})

    def get_inline(self, owner_arn: str, name: str) -> str | None:
        i = s.inline_policies
        with self.meta.read() as conn:
            return conn.execute(select(i.c.document).where(and_(i.c.owner_arn == owner_arn,
                                                                i.c.name == name))).scalar()

    def list_inline(self, owner_arn: str) -> list[str]:
        i = s.inline_policies
        with self.meta.read() as conn:
            return list(conn.execute(select(i.c.name).where(i.c.owner_arn == owner_arn).order_by(i.c.name)).scalars())

    def delete_inline(self, owner_arn: str, name: str) -> bool:
        i = s.inline_policies
        with self.meta.write() as conn:
            return conn.execute(delete(i).where(and_(i.c.owner_arn == owner_arn, i.c.name == name))).rowcount > 0

    def _policy_select(self) -> Any:
        m, a = s.managed_policies, s.policy_attachments
        count = select(func.count()).select_from(a).where(a.c.policy_arn == m.c.arn).scalar_subquery()
        return select(m, count.label("attachment_count"))

    @staticmethod
    def _policy(row: Any) -> PolicyRow:
        return PolicyRow(row.arn, row.name, row.policy_id, row.path, row.description, row.document,
                         row.created_at, row.updated_at, int(row.attachment_count))

    def create_policy(self, arn: str, account_id: str, name: str, policy_id: str, path: str,
                      description: str | None, document: str, now: int) -> PolicyRow:
        try:
            with self.meta.write() as conn:
                conn.execute(insert(s.managed_policies).values(
                    arn=arn, account_id=account_id, name=name, policy_id=policy_id, path=path,
                    description=description, document=document, created_at=now, updated_at=now))
        except IntegrityError:
            raise Conflict(name) from None
        policy = self.get_policy(arn)
        assert policy is not None
        return policy

    def get_policy(self, arn: str) -> PolicyRow | None:
        with self.meta.read() as conn:
            row = conn.execute(self._policy_select().where(s.managed_policies.c.arn == arn)).first()
        return self._policy(row) if row else None

    def list_policies(self, account_id: str, after: str | None, limit: int) -> list[PolicyRow]:
        m = s.managed_policies
        stmt = self._policy_select().where(m.c.account_id == account_id)
        if after is not None:
            stmt = stmt.where(self.meta._lexical(m.c.name) > after)
        with self.meta.read() as conn:
            return [self._policy(r) for r in conn.execute(stmt.order_by(self.meta._lexical(m.c.name)).limit(limit))]

    def delete_policy(self, arn: str) -> None:
        with self.meta.write() as conn:
            conn.execute(delete(s.managed_policies).where(s.managed_policies.c.arn == arn))

    def attach(self, owner_arn: str, policy_arn: str) -> None:
        with self.meta.write() as conn:
            self.meta._insert_ignore(conn, s.policy_attachments, {"owner_arn": owner_arn, "policy_arn": policy_arn})

    def detach(self, owner_arn: str, policy_arn: str) -> bool:
        a = s.policy_attachments
        with self.meta.write() as conn:
            return conn.execute(delete(a).where(and_(a.c.owner_arn == owner_arn,
                                                     a.c.policy_arn == policy_arn))).rowcount > 0

    def attached(self, owner_arn: str) -> list[tuple[str, str]]:
        a, m = s.policy_attachments, s.managed_policies
        with self.meta.read() as conn:
            rows = conn.execute(select(m.c.name, m.c.arn).join(a, a.c.policy_arn == m.c.arn)
                                .where(a.c.owner_arn == owner_arn).order_by(m.c.name)).all()
        return [(r.name, r.arn) for r in rows]

    def identity_policies(self, user_arn: str) -> list[tuple[str, str]]:
        """Every policy document that applies to a user, as (label, document), in one query (on
        SQLite the remembered per-request read: every request of an IAM user asks)."""
        hot = self.meta.hot
        if hot is not None:
            return [(r.label, r.document) for r in hot.identity_policies(user_arn)]
        i, a, m, g = s.inline_policies, s.policy_attachments, s.managed_policies, s.group_members
        owners = union_all(select(literal(user_arn).label("owner")),
                           select(g.c.group_arn.label("owner")).where(g.c.user_arn == user_arn)).subquery()
        inline = select((owners.c.owner + literal(" inline:") + i.c.name).label("label"), i.c.document) \
            .join(owners, owners.c.owner == i.c.owner_arn)
        managed = select(m.c.arn.label("label"), m.c.document) \
            .join(a, a.c.policy_arn == m.c.arn).join(owners, owners.c.owner == a.c.owner_arn)
        with self.meta.read() as conn:
            return [(r.label, r.document) for r in conn.execute(union_all(inline, managed))]

    # -- audit trail ------------------------------------------------------------------------

    def record(self, events: Sequence[AuditEvent]) -> None:
        """Append a batch of decisions. Plain driver-level executemany of tuples: half the CPU of an
        expression insert of dicts, and this runs for every request. The commit does not wait for
        the disk: the batch was only in memory a moment ago anyway (see AuditLog)."""
        if not events:
            return
        mark = "?" if self.meta.engine.dialect.paramstyle == "qmark" else "%s"
        sql = (f"INSERT INTO audit_events ({', '.join(_AUDIT_FIELDS)}) "
               f"VALUES ({', '.join([mark] * len(_AUDIT_FIELDS))})")
        with self.meta.write_unsynced() as conn:
            conn.exec_driver_sql(sql, [_audit_values(e) for e in events])

    def purge_events(self, before_ms: int, batch: int = 10_000) -> int:
        """Delete decisions older than `before_ms`, a batch per transaction (writers wait briefly)."""
        e = s.audit_events
        purged = 0
        while True:
            with self.meta.write_unsynced() as conn:
                ids = select(e.c.id).where(e.c.at < before_ms).order_by(e.c.at).limit(batch).scalar_subquery()
                count = conn.execute(delete(e).where(e.c.id.in_(ids))).rowcount
            purged += count
            if count < batch:
                return purged

    def events(self, *, since: int | None = None, principal: str | None = None, action: str | None = None,
               allowed: bool | None = None, limit: int = 100) -> list[AuditEvent]:
        e = s.audit_events
        stmt = select(e)
        if since is not None:
            stmt = stmt.where(e.c.at >= since)
        if principal:
            stmt = stmt.where(e.c.principal_arn == principal)
        if action:
            stmt = stmt.where(e.c.action == action)
        if allowed is not None:
            stmt = stmt.where(e.c.allowed == allowed)
        with self.meta.read() as conn:
            rows = conn.execute(stmt.order_by(e.c.id.desc()).limit(limit)).all()
        return [AuditEvent(r.at, r.request_id, r.principal_arn, r.action, r.resource, r.source_ip, r.endpoint_id,
                           bool(r.allowed), r.reason, r.policy, r.statement) for r in rows]
