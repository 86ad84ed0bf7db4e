"""The metadata store's row types: what its methods take and return, and how rows become them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cargohold.storage.meta import schema as s


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


MANIFEST_COLS = (s.manifests.c.digest, s.manifests.c.media_type, s.manifests.c.artifact_type,
                  s.manifests.c.subject_digest, s.manifests.c.config_digest, s.manifests.c.size,
                  s.manifests.c.image_size, s.manifests.c.annotations, s.manifests.c.pushed_at,
                  s.manifests.c.last_pulled_at)


def repository_of(row: Any) -> Repository:
    return Repository(row.id, row.account_id, row.name, row.created_at, row.tag_mutability,
                      row.mutability_exclusions or [], bool(row.scan_on_push), row.encryption,
                      row.resource_tags or [], row.policy, row.lifecycle_policy, row.lifecycle_evaluated_at)


def manifest_of(row: Any, with_content: bool = False) -> ManifestRow:
    return ManifestRow(row.digest, row.media_type, row.artifact_type, row.subject_digest,
                       row.config_digest, row.size, row.image_size, row.annotations, row.pushed_at,
                       row.last_pulled_at, row.content if with_content else None)
