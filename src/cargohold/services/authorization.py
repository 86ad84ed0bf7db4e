"""The one policy engine hook: every request on every face is decided here and audited.

Identity policies (a user's inline and attached policies, and its groups'), the resource's
policy (a repository policy) and the registry policy are evaluated together by the pure
domain evaluator. Decisions go to an audit trail that is written in batches off the request path.
"""

from __future__ import annotations

import collections
import datetime
import functools
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable

from cargohold.domain.policy import Decision, Policy, PolicyError, RequestFacts, evaluate, parse_policy
from cargohold.errors import Kind, RegistryError
from cargohold.services.identity import Principal, RequestContext, ResourceFacts, denied_message
from cargohold.storage.meta.iam import AuditEvent, IamStore

log = logging.getLogger("cargohold.audit")
REGISTRY_POLICY_KEY = "registry_policy"
MAX_PENDING = 100_000  # audit events waiting for the writer; beyond, events are dropped (and logged)


_ids = itertools.count(1)
_PREFIX = f"{os.getpid():x}-{uuid.uuid4().hex[:8]}-"


def _next_id() -> str:
    """A unique request id without a uuid4 per request (process prefix + counter)."""
    return f"{_PREFIX}{next(_ids)}"


@functools.lru_cache(maxsize=4096)
def _parse(text: str, resource_policy: bool) -> Policy:
    return parse_policy(text, resource_policy=resource_policy)


def parse_or_none(text: str, resource_policy: bool) -> Policy | None:
    try:
        return _parse(text, resource_policy)
    except PolicyError:
        log.warning("ignoring a stored policy that no longer parses")
        return None


class AuditLog:
    """Buffers decisions and writes them from one background thread, a fifth of a second behind.

    Short batches on purpose: a batch is written holding the GIL for its Python part (~4 us an
    event), so one second of a busy registry (5,000 decisions) stalled requests for ~20 ms."""

    def __init__(self, store: IamStore, flush_seconds: float = 0.2, enabled: bool = True) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self.enabled = enabled
        # A deque, not a queue.Queue: append and popleft are atomic, and Queue's lock and conditions
        # cost 3% of a small request. Bounded by hand so a stuck database cannot eat the memory.
        self._pending: collections.deque[AuditEvent] = collections.deque()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, event: AuditEvent) -> None:
        if not self.enabled:
            return
        if len(self._pending) < MAX_PENDING:
            self._pending.append(event)
        else:
            log.error("audit queue full: dropping an event")
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="cargohold-audit", daemon=True)
                    self._thread.start()

    def flush(self) -> None:
        batch: list[AuditEvent] = []
        pending = self._pending
        while pending:
            batch.append(pending.popleft())
        if batch:
            try:
                self.store.record(batch)
            except Exception:
                log.exception("could not write %d audit events", len(batch))

    def _run(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            self.flush()


class PolicyAuthorizer:
    def __init__(self, store: IamStore, account_id: str, audit: AuditLog,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.account_id = account_id
        self.audit = audit
        self.clock = clock

    def registry_policy(self, account_id: str) -> str | None:
        return self.store.meta.get_setting(f"{REGISTRY_POLICY_KEY}:{account_id}")

    def decide(self, principal: Principal, action: str, resource: str, context: RequestContext,
               facts: ResourceFacts | None = None) -> Decision:
        facts = facts or ResourceFacts()
        identity: list[tuple[str, Policy]] = []
        if principal.kind != "root":
            for label, text in self.store.identity_policies(principal.arn):
                parsed = parse_or_none(text, False)
                if parsed is not None:
                    identity.append((label, parsed))
        resource_policies: list[tuple[str, Policy]] = []
        if facts.policy:
            parsed = parse_or_none(facts.policy, True)
            if parsed is not None:
                resource_policies.append(("repository policy", parsed))
        resource_account = facts.account_id or _arn_account(resource) or self.account_id
        if action.startswith("ecr:"):
            registry_text = self.registry_policy(resource_account)
            if registry_text:
                parsed = parse_or_none(registry_text, True)
                if parsed is not None:
                    resource_policies.append(("registry policy", parsed))
        # Only policy statements read condition keys: with none to evaluate, none are built (that
        # was a tenth of a small request).
        keys = self._condition_keys(principal, context, facts) if identity or resource_policies else {}
        request = RequestFacts(action=action, resource=resource, principal_arn=principal.arn,
                               principal_account=principal.account_id, context=keys)
        return evaluate(request, identity, resource_policies, resource_account=resource_account,
                        is_account_root=principal.kind == "root")

    def _condition_keys(self, principal: Principal, context: RequestContext,
                        facts: ResourceFacts) -> dict[str, object]:
        now = self.clock()
        keys: dict[str, object] = {
            "aws:SourceIp": context.source_ip, "aws:SecureTransport": context.secure_transport,
            "aws:CurrentTime": datetime.datetime.fromtimestamp(now, datetime.UTC), "aws:EpochTime": int(now),
            "aws:PrincipalArn": principal.arn, "aws:PrincipalAccount": principal.account_id,
            "aws:userid": principal.user_id, "aws:PrincipalType": "Account" if principal.kind == "root" else "User",
        }
        if principal.kind == "user":
            keys["aws:username"] = principal.name
        if context.endpoint_id:
            keys["aws:SourceVpce"] = context.endpoint_id
        for key, value in facts.tags:
            keys[f"aws:ResourceTag/{key}"] = value
            keys[f"ecr:ResourceTag/{key}"] = value
        keys.update(context.extra)
        return keys

    def authorize(self, principal: Principal, action: str, resource: str, context: RequestContext,
                  facts: ResourceFacts | None = None) -> None:
        decision = self.decide(principal, action, resource, context, facts)
        self.audit.add(AuditEvent(
            at=int(self.clock() * 1000), request_id=context.request_id or _next_id(),
            principal_arn=principal.arn, action=action, resource=resource, source_ip=context.source_ip,
            endpoint_id=context.endpoint_id, allowed=decision.allowed, reason=decision.reason,
            policy=decision.policy, statement=decision.statement))
        if not decision.allowed:
            # AWS's wording: which kind of policy denied, or that nothing allowed.
            if decision.reason == "explicit_deny":
                where = "resource-based" if decision.policy in ("repository policy", "registry policy") \
                    else "identity-based"
                why = f" with an explicit deny in a {where} policy"
            else:
                why = f" because no identity-based policy allows the {action} action"
            raise RegistryError(Kind.DENIED, denied_message(principal, action, resource) + why)


def _arn_account(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and parts[0] == "arn" and parts[4] else None
