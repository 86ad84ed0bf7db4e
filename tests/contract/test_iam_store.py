"""IamStore on SQLite and PostgreSQL: the audit trail (batches written as given, every field kept,
retention purging only what is older than the cut-off, in batches; newest first on reading) and
the per-request read of a user's policies."""

from __future__ import annotations

from sqlalchemy import Engine

from cargohold.storage.meta.iam import AuditEvent, IamStore
from cargohold.storage.meta.store import MetadataStore


def _event(at: int, n: int, allowed: bool = True) -> AuditEvent:
    return AuditEvent(at=at, request_id=f"req-{n}", principal_arn="arn:aws:iam::123456789012:user/u",
                      action="ecr:BatchGetImage", resource="arn:aws:ecr:us-east-1:123456789012:repository/r",
                      source_ip="10.0.0.1", endpoint_id="vpce-1" if n % 2 else "", allowed=allowed,
                      reason="allowed" if allowed else "explicit_deny",
                      policy="repository policy" if not allowed else None, statement="S1" if not allowed else None)


def test_record_keeps_every_field_and_purge_honours_the_cutoff(engine: Engine) -> None:
    store = IamStore(MetadataStore(engine))
    base = 1_900_000_000_000 + (0 if engine.dialect.name == "sqlite" else 10_000_000)
    events = [_event(base + n, n, allowed=n % 3 != 0) for n in range(25)]
    store.record(events)
    store.record([])  # an empty batch writes nothing and does not fail

    got = store.events(since=base, limit=100)
    assert got == sorted(events, key=lambda e: e.at, reverse=True)  # newest first, every field round-trips
    assert [e.request_id for e in store.events(since=base, allowed=False)] == \
        [f"req-{n}" for n in (24, 21, 18, 15, 12, 9, 6, 3, 0)]

    assert store.purge_events(base + 10, batch=4) == 10  # three batches: 4 + 4 + 2
    left = store.events(since=base, limit=100)
    assert [e.at for e in left] == [base + n for n in range(24, 9, -1)]
    assert store.purge_events(base + 10, batch=4) == 0  # nothing older is left; nothing else touched
    assert len(store.events(since=base, limit=100)) == 15


def test_identity_policies_gather_inline_attached_and_group_policies(engine: Engine) -> None:
    """The union SQLite answers on its fast path and PostgreSQL through Core: same rows, and every
    change (a new inline policy, an attachment, a group membership) seen by the next read."""
    store = IamStore(MetadataStore(engine))
    acct = "123456789012"
    user = f"arn:aws:iam::{acct}:user/idp-ci"
    group = f"arn:aws:iam::{acct}:group/idp-builders"
    other = f"arn:aws:iam::{acct}:user/idp-other"
    store.create_user(user, acct, "idp-ci", "AIDAIDP1", "/", 1, None)
    store.create_user(other, acct, "idp-other", "AIDAIDP2", "/", 1, None)
    store.create_group(group, acct, "idp-builders", "AGPAIDP1", "/", 1)
    managed = f"arn:aws:iam::{acct}:policy/idp-pull"
    store.create_policy(managed, acct, "idp-pull", "ANPAIDP1", "/", None, '{"m": 1}', 1)

    assert store.identity_policies(user) == []
    store.put_inline(user, "own", '{"u": 1}')
    assert store.identity_policies(user) == [(f"{user} inline:own", '{"u": 1}')]
    store.add_member(group, user)
    store.put_inline(group, "team", '{"g": 1}')
    store.attach(group, managed)
    store.put_inline(other, "theirs", '{"o": 1}')
    assert sorted(store.identity_policies(user)) == sorted([
        (f"{user} inline:own", '{"u": 1}'), (f"{group} inline:team", '{"g": 1}'), (managed, '{"m": 1}')])
    store.remove_member(group, user)
    store.attach(user, managed)
    assert sorted(store.identity_policies(user)) == sorted([(f"{user} inline:own", '{"u": 1}'), (managed, '{"m": 1}')])
    assert store.identity_policies(other) == [(f"{other} inline:theirs", '{"o": 1}')]
