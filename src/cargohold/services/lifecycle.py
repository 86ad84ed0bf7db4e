"""Lifecycle policies: stored per repository, previewed, and applied by runs that expire images."""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cargohold.domain.lifecycle import (
    Expiry,
    ImageFacts,
    LifecyclePolicyError,
    parse_lifecycle_policy,
    select_expired,
)
from cargohold.errors import Kind, RegistryError
from cargohold.services.repositories import Caller, Repositories
from cargohold.storage.meta.iam import AuditEvent, IamStore
from cargohold.storage.meta.store import MetadataStore, Repository

LIFECYCLE_PRINCIPAL = "arn:aws:iam::{account}:cargohold/lifecycle"
# A preview still IN_PROGRESS this long after it started was abandoned (the process evaluating it stopped):
# it reads as FAILED and no longer blocks a new preview.
PREVIEW_ABANDONED_MS = 15 * 60 * 1000


def _dt(ms: int | None) -> datetime.datetime | None:
    return None if ms is None else datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)


@dataclass(frozen=True)
class Expired:
    repository: str
    expiry: Expiry
    deleted: bool


class Lifecycle:
    def __init__(self, meta: MetadataStore, repos: Repositories, iam_store: IamStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.meta = meta
        self.repos = repos
        self.iam_store = iam_store
        self.clock = clock

    def _check(self, text: str) -> None:
        try:
            parse_lifecycle_policy(text)
        except LifecyclePolicyError as err:
            raise RegistryError(Kind.INVALID_PARAMETER, err.message) from None

    def _not_found(self, repo: Repository) -> RegistryError:
        return RegistryError(Kind.LIFECYCLE_POLICY_NOT_FOUND,
                             f"Lifecycle policy does not exist for the repository with name '{repo.name}' "
                             f"in the registry with id '{repo.account_id}'")

    # -- policy CRUD ------------------------------------------------------------------------

    def put(self, caller: Caller, name: str, text: str) -> Repository:
        repo = self.repos.resolve(caller, name, "ecr:PutLifecyclePolicy")
        self._check(text)
        self.meta.update_repository(repo.id, lifecycle_policy=text)
        return self.repos.resolve(caller, name, "ecr:PutLifecyclePolicy")

    def get(self, caller: Caller, name: str) -> Repository:
        repo = self.repos.resolve(caller, name, "ecr:GetLifecyclePolicy")
        if repo.lifecycle_policy is None:
            raise self._not_found(repo)
        return repo

    def delete(self, caller: Caller, name: str) -> Repository:
        repo = self.repos.resolve(caller, name, "ecr:DeleteLifecyclePolicy")
        if repo.lifecycle_policy is None:
            raise self._not_found(repo)
        self.meta.update_repository(repo.id, lifecycle_policy=None)
        return repo

    # -- evaluation -------------------------------------------------------------------------

    def _facts(self, repo: Repository) -> list[ImageFacts]:
        facts: list[ImageFacts] = []
        cursor: str | None = None
        while rows := self.meta.list_manifests(repo.id, cursor, 1000):
            tags = self.meta.tags_of(repo.id, [r.digest for r in rows])
            for row in rows:
                pushed = _dt(row.pushed_at)
                assert pushed is not None
                facts.append(ImageFacts(row.digest, tuple(tags[row.digest]), pushed, _dt(row.last_pulled_at)))
            cursor = rows[-1].digest
        return facts

    def evaluate(self, repo: Repository, text: str, now: float) -> list[Expiry]:
        policy = parse_lifecycle_policy(text)
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        return select_expired(policy, self._facts(repo), moment)

    def _held(self, repo: Repository, chosen: list[Expiry]) -> set[str]:
        """Chosen images that an index outside the expiring set (directly or not) still references.

        A run never deletes an image an index references (MetadataStore.expire_manifest), so previews
        and dry runs leave these out; an index that expires with its children goes first.
        """
        digests = {e.digest for e in chosen}
        parents = {d: self.meta.parents_of(repo.id, d) for d in digests}
        held: set[str] = set()
        changed = True
        while changed:
            changed = False
            for digest in digests - held:
                if any(p not in digests or p in held for p in parents[digest]):
                    held.add(digest)
                    changed = True
        return held

    def start_preview(self, caller: Caller, name: str, text: str | None) -> tuple[Repository, str]:
        repo = self.repos.resolve(caller, name, "ecr:StartLifecyclePolicyPreview")
        policy = text if text is not None else repo.lifecycle_policy
        if policy is None:
            raise self._not_found(repo)
        self._check(policy)
        existing = self.meta.get_preview(repo.id)
        now = self.clock()
        if existing is not None and existing[1] == "IN_PROGRESS" and not self._abandoned(repo, now):
            raise RegistryError(Kind.LIFECYCLE_PREVIEW_IN_PROGRESS,
                                "The previous lifecycle policy preview request has not completed. Wait and try again.")
        self.meta.save_preview(repo.id, policy, "IN_PROGRESS", None, int(now * 1000))
        # Evaluated off the request path, like ECR: the caller polls GetLifecyclePolicyPreview.
        threading.Thread(target=self._preview, args=(repo, policy, now), daemon=True).start()
        return repo, policy

    def _preview(self, repo: Repository, policy: str, now: float) -> None:
        try:
            chosen = self.evaluate(repo, policy, now)
            held = self._held(repo, chosen)
            results = [{"imageDigest": e.digest, "imageTags": list(e.tags),
                        "imagePushedAt": e.pushed_at.timestamp(), "appliedRulePriority": e.rule_priority}
                       for e in chosen if e.digest not in held]
            self.meta.save_preview(repo.id, policy, "COMPLETE", results, int(now * 1000))
        except Exception:
            self.meta.save_preview(repo.id, policy, "FAILED", None, int(now * 1000))

    def get_preview(self, caller: Caller, name: str) -> tuple[Repository, str, str, list[dict[str, Any]]]:
        repo = self.repos.resolve(caller, name, "ecr:GetLifecyclePolicyPreview")
        found = self.meta.get_preview(repo.id)
        if found is None:
            raise RegistryError(Kind.LIFECYCLE_PREVIEW_NOT_FOUND,
                                f"Lifecycle policy preview does not exist for the repository with name "
                                f"'{repo.name}' in the registry with id '{repo.account_id}'")
        policy, status, results = found
        if status == "IN_PROGRESS" and self._abandoned(repo, self.clock()):
            status = "FAILED"
        return repo, policy, status, results or []

    def _abandoned(self, repo: Repository, now: float) -> bool:
        started = self.meta.preview_started_at(repo.id)
        return started is not None and now * 1000 - started > PREVIEW_ABANDONED_MS

    # -- runs -------------------------------------------------------------------------------

    def run(self, dry_run: bool = False, progress: Callable[[str, int], None] | None = None) -> list[Expired]:
        """Apply every repository's policy once. Images pushed or re-tagged after the run began are kept."""
        started = self.clock()
        started_ms = int(started * 1000)
        out: list[Expired] = []
        events: list[AuditEvent] = []
        for repo in self.meta.repositories_with_lifecycle():
            assert repo.lifecycle_policy is not None
            try:
                chosen = self.evaluate(repo, repo.lifecycle_policy, started)
            except LifecyclePolicyError:
                continue
            held = self._held(repo, chosen)
            chosen = [e for e in chosen if e.digest not in held]
            deleted_now: set[str] = set()
            pending = [] if dry_run else chosen
            while pending:  # an index goes before the children it references: retry what a deletion freed
                done = {e.digest for e in pending if self.meta.expire_manifest(repo.id, e.digest, started_ms)}
                deleted_now |= done
                pending = [e for e in pending if e.digest not in done] if done else []
            for expiry in chosen:
                deleted = expiry.digest in deleted_now
                out.append(Expired(repo.name, expiry, deleted))
                if deleted:
                    events.append(AuditEvent(
                        at=int(self.clock() * 1000), request_id=uuid.uuid4().hex,
                        principal_arn=LIFECYCLE_PRINCIPAL.format(account=repo.account_id),
                        action="ecr:BatchDeleteImage",
                        resource=f"{self.repos.arn(repo.name, repo.account_id)}@{expiry.digest}",
                        source_ip="", endpoint_id="", allowed=True, reason="lifecycle",
                        policy=f"lifecycle rule {expiry.rule_priority}", statement=None))
            if not dry_run:
                self.meta.update_repository(repo.id, lifecycle_evaluated_at=started_ms)
            if progress:
                progress(repo.name, len(out))
        if events and self.iam_store is not None:
            self.iam_store.record(events)
        return out
