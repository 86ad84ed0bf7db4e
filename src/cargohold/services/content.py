"""Reading and changing what a repository holds: blobs, manifests, tags, referrers, catalog."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cargohold.domain.digests import digest_of, parse_digest
from cargohold.domain.manifests import OCI_INDEX, parse_manifest
from cargohold.domain.names import check_tag, parse_reference
from cargohold.errors import Kind, RegistryError
from cargohold.services.repositories import Caller, Repositories
from cargohold.storage.blobs.base import BlobStore
from cargohold.storage.meta.store import ManifestRow, MetadataStore, NewManifest, Repository

PULL_RECORD_INTERVAL_MS = 60_000  # lastRecordedPullTime is approximate, as on ECR
log = logging.getLogger("cargohold.content")


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int


@dataclass(frozen=True)
class PutResult:
    digest: str
    subject: str | None


@dataclass(frozen=True)
class ManifestPushed:
    """What push observers (e.g. scan on push, wired by the composition root) are told."""
    repository: Repository
    digest: str
    media_type: str
    tag: str | None


def tag_is_immutable(repo: Repository, tag: str) -> bool:
    mode = repo.tag_mutability
    filters = [f.get("filter", "") for f in repo.mutability_exclusions
               if f.get("filterType", "WILDCARD") == "WILDCARD"]
    matches = any(fnmatch.fnmatchcase(tag, f) for f in filters)
    if mode == "IMMUTABLE":
        return True
    if mode == "IMMUTABLE_WITH_EXCLUSION":
        return not matches
    if mode == "MUTABLE_WITH_EXCLUSION":
        return matches
    return False


class Content:
    def __init__(self, meta: MetadataStore, blobs: BlobStore, repos: Repositories,
                 link_refresh_ms: int = 1_800_000) -> None:
        self.link_refresh_ms = link_refresh_ms  # half the GC grace window
        self.meta = meta
        self.blobs = blobs
        self.repos = repos
        # Called after a manifest is stored; must return at once (queue work, never do it here).
        self.push_observers: list[Callable[[ManifestPushed], None]] = []

    # -- blobs ------------------------------------------------------------------------------

    def blob(self, caller: Caller, name: str, digest: str, *, head: bool = False) -> BlobInfo:
        parse_digest(digest)
        action = "ecr:BatchCheckLayerAvailability" if head else "ecr:GetDownloadUrlForLayer"
        repo = self.repos.resolve(caller, name, action)
        found = self.meta.repository_blob(repo.id, digest)
        if found is None:
            raise RegistryError(Kind.BLOB_UNKNOWN, f"blob {digest} is not in repository '{name}'")
        size, linked_at = found
        now = self.repos.now_ms()
        if head and now - linked_at > self.link_refresh_ms:
            # A client that HEADs a blob and skips its upload will reference it soon: restart the
            # garbage collector's grace window for the link (at most once per half window).
            self.meta.touch_link(repo.id, digest, now)
        return BlobInfo(digest, size)

    def delete_blob(self, caller: Caller, name: str, digest: str) -> None:
        parse_digest(digest)
        repo = self.repos.resolve(caller, name, "ecr:BatchDeleteImage")
        if not self.meta.unlink_blob(repo.id, digest):
            raise RegistryError(Kind.BLOB_UNKNOWN, f"blob {digest} is not in repository '{name}'")

    # -- manifests --------------------------------------------------------------------------

    def get_manifest(self, caller: Caller, name: str, reference: str, *, head: bool = False) -> ManifestRow:
        try:
            tag, digest = parse_reference(reference)
        except RegistryError as err:
            if err.kind is not Kind.TAG_INVALID:
                raise
            tag = digest = None
        repo = self.repos.resolve(caller, name, "ecr:BatchGetImage")
        if digest is not None:
            row = self.meta.get_manifest(repo.id, digest, with_content=not head)
        elif tag is not None:
            row = self.meta.get_manifest_by_tag(repo.id, tag, with_content=not head)
        else:
            # A reference no tag can have (".x", "<ref>") names no manifest: a pull of it is 404, as
            # OCI and the official conformance suite have it (TAG_INVALID, an optional Docker-era
            # code, stays for PUT and DELETE); after resolve, so NAME_UNKNOWN and denials come first.
            row = None
        if row is None:
            raise RegistryError(Kind.MANIFEST_UNKNOWN,
                                f"manifest {reference[:200]!r} is not in repository '{name}'")
        if not head:
            now = self.repos.now_ms()
            if row.last_pulled_at is None or now - row.last_pulled_at > PULL_RECORD_INTERVAL_MS:
                self.meta.record_pull(repo.id, row.digest, now)
        return row

    def put_manifest(self, caller: Caller, name: str, reference: str, body: bytes,
                     content_type: str | None) -> PutResult:
        tag, ref_digest = parse_reference(reference)
        repo = self.repos.resolve(caller, name, "ecr:PutImage", create=True)
        parsed = parse_manifest(body, content_type)
        digest = digest_of(body, ref_digest.split(":")[0] if ref_digest else "sha256")
        if ref_digest is not None and digest != ref_digest:
            raise RegistryError(Kind.DIGEST_INVALID,
                                f"manifest digest {digest} does not match reference {ref_digest}")
        if tag is not None:
            check_tag(tag)
            if tag_is_immutable(repo, tag):
                current = self.meta.tag_digest(repo.id, tag)
                if current is not None and current != digest:
                    raise RegistryError(
                        Kind.TAG_IMMUTABLE,
                        f"The image tag '{tag}' already exists in the '{name}' repository and cannot "
                        f"be overwritten because the repository is immutable.")
        image_size = parsed.layer_bytes()
        if parsed.is_index and parsed.children:
            # ECR's imageSizeInBytes for a manifest list: "the max size of all manifests in the list".
            children = self.meta.manifests_by_digest(repo.id, parsed.required_manifests())
            image_size = max((row.image_size for row in children.values()), default=0)
        new = NewManifest(
            digest=digest, media_type=parsed.media_type, artifact_type=parsed.artifact_type,
            subject_digest=parsed.subject.digest if parsed.subject else None,
            config_digest=parsed.config.digest if parsed.config else None,
            image_size=image_size, annotations=parsed.annotations, content=body,
            blob_refs=parsed.required_blobs(), manifest_refs=parsed.required_manifests())
        self.meta.put_manifest(repo.id, new, tag, self.repos.now_ms())
        for observer in self.push_observers:
            try:
                observer(ManifestPushed(repo, digest, parsed.media_type, tag))
            except Exception:  # an observer's failure never fails the push
                log.exception("push observer failed for %s@%s", name, digest)
        return PutResult(digest, new.subject_digest)

    def delete_manifest(self, caller: Caller, name: str, reference: str) -> None:
        tag, digest = parse_reference(reference)
        repo = self.repos.resolve(caller, name, "ecr:BatchDeleteImage")
        if digest is not None:
            found = self.meta.delete_manifest(repo.id, digest)
        else:
            assert tag is not None
            found = self.meta.delete_tag(repo.id, tag)
        if not found:
            raise RegistryError(Kind.MANIFEST_UNKNOWN,
                                f"manifest '{reference}' is not in repository '{name}'")

    # -- listings ---------------------------------------------------------------------------

    def tags(self, caller: Caller, name: str, last: str | None, n: int) -> list[str]:
        repo = self.repos.resolve(caller, name, "ecr:ListImages")
        return self.meta.list_tags(repo.id, last, n) if n > 0 else []

    def catalog(self, caller: Caller, last: str | None, n: int) -> list[str]:
        self.repos.authorize(caller, "ecr:DescribeRepositories", "*")
        if n <= 0:
            return []
        return [r.name for r in self.meta.list_repositories(self.repos.registry_of(caller), last, n)]

    def referrers(self, caller: Caller, name: str, digest: str,
                  artifact_type: str | None) -> dict[str, Any]:
        parse_digest(digest)
        try:
            repo = self.repos.resolve(caller, name, "ecr:BatchGetImage")
        except RegistryError as err:
            # OCI v1.1: the referrers API MUST NOT answer 404; an unknown repository has none.
            if err.kind is not Kind.NAME_UNKNOWN:
                raise
            return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        rows = self.meta.referrers(repo.id, digest)
        manifests = []
        for row in rows:
            if artifact_type is not None and row.artifact_type != artifact_type:
                continue
            entry: dict[str, Any] = {"mediaType": row.media_type, "digest": row.digest, "size": row.size}
            if row.artifact_type:
                entry["artifactType"] = row.artifact_type
            if row.annotations:
                entry["annotations"] = row.annotations
            manifests.append(entry)
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}

    def blob_by_grant(self, grant: str) -> BlobInfo:
        """Resolve a signed download grant (from GetDownloadUrlForLayer) to a blob."""
        box = self.repos.box
        payload = box.verify(grant) if box is not None else None
        if payload is None or not isinstance(payload.get("e"), int) or payload["e"] < self.repos.clock():
            raise RegistryError(Kind.DENIED, "the download URL is invalid or has expired")
        account, name, digest = str(payload.get("a")), str(payload.get("r")), str(payload.get("d"))
        repo = self.meta.get_repository(account, name)
        size = self.meta.repository_blob_size(repo.id, digest) if repo else None
        if size is None:
            raise RegistryError(Kind.BLOB_UNKNOWN, f"blob {digest} is not in repository '{name}'")
        return BlobInfo(digest, size)
