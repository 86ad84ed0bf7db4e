"""The metadata schema, one definition for SQLite and PostgreSQL (SQLAlchemy Core).

Repositories never own bytes: they own rows that link to content-addressed blobs.
Alembic migrations under migrations/ create exactly this schema (a test compares them).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Times are stored as integer milliseconds since the epoch: portable and cheap to compare.

principals = Table(
    "principals", metadata,
    Column("arn", String(512), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("kind", String(16), nullable=False),  # root | user
    Column("name", String(128), nullable=False),
    Column("user_id", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("path", String(512), nullable=False, server_default="/"),
    Column("tags", JSON, nullable=True),
)

access_keys = Table(
    "access_keys", metadata,
    Column("key_id", String(128), primary_key=True),
    Column("principal_arn", String(512), ForeignKey("principals.arn", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("secret_enc", LargeBinary, nullable=False),  # encrypted at rest (Fernet)
    Column("status", String(16), nullable=False),  # Active | Inactive
    Column("created_at", BigInteger, nullable=False),
)

repositories = Table(
    "repositories", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(12), nullable=False),
    Column("name", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("tag_mutability", String(32), nullable=False, server_default="MUTABLE"),
    Column("mutability_exclusions", JSON, nullable=True),
    Column("scan_on_push", Boolean, nullable=False, server_default="0"),
    Column("encryption", JSON, nullable=True),
    Column("resource_tags", JSON, nullable=True),
    Column("policy", Text, nullable=True),  # the repository policy document
    Column("lifecycle_policy", Text, nullable=True),
    Column("lifecycle_evaluated_at", BigInteger, nullable=True),
    UniqueConstraint("account_id", "name", name="uq_repositories_account_name"),
)

blobs = Table(
    "blobs", metadata,
    Column("digest", String(160), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

repository_blobs = Table(
    "repository_blobs", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           primary_key=True),
    Column("digest", String(160), ForeignKey("blobs.digest"), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
)
Index("ix_repository_blobs_digest", repository_blobs.c.digest)

manifests = Table(
    "manifests", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           primary_key=True),
    Column("digest", String(160), primary_key=True),
    Column("media_type", String(255), nullable=False),
    Column("artifact_type", String(255), nullable=True),
    Column("subject_digest", String(160), nullable=True),
    Column("config_digest", String(160), nullable=True),
    Column("size", BigInteger, nullable=False),  # bytes of the manifest document
    Column("image_size", BigInteger, nullable=False),  # sum of layer sizes (ECR's imageSizeInBytes)
    Column("annotations", JSON, nullable=True),
    Column("content", LargeBinary, nullable=False),  # the exact bytes pushed
    Column("pushed_at", BigInteger, nullable=False),
    Column("last_pulled_at", BigInteger, nullable=True),
)
Index("ix_manifests_subject", manifests.c.repository_id, manifests.c.subject_digest)

manifest_references = Table(
    "manifest_references", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           primary_key=True),
    Column("parent_digest", String(160), primary_key=True),
    Column("child_digest", String(160), primary_key=True),
    Column("kind", String(8), primary_key=True),  # blob | manifest
)
Index("ix_manifest_references_child", manifest_references.c.child_digest)

tags = Table(
    "tags", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("digest", String(160), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
Index("ix_tags_digest", tags.c.repository_id, tags.c.digest)

uploads = Table(
    "uploads", metadata,
    Column("id", String(64), primary_key=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("last_part_size", BigInteger, nullable=True),  # ECR layer parts: all but the last >= 5 MiB
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

settings = Table(
    "settings", metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)

# -- identity and access (IAM-style) ---------------------------------------------------------------

iam_groups = Table(
    "iam_groups", metadata,
    Column("arn", String(512), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("name", String(128), nullable=False),
    Column("group_id", String(32), nullable=False),
    Column("path", String(512), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("account_id", "name", name="uq_iam_groups_account_name"),
)

group_members = Table(
    "group_members", metadata,
    Column("group_arn", String(512), ForeignKey("iam_groups.arn", ondelete="CASCADE"), primary_key=True),
    Column("user_arn", String(512), ForeignKey("principals.arn", ondelete="CASCADE"), primary_key=True),
)
Index("ix_group_members_user", group_members.c.user_arn)

managed_policies = Table(
    "managed_policies", metadata,
    Column("arn", String(512), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("name", String(128), nullable=False),
    Column("policy_id", String(32), nullable=False),
    Column("path", String(512), nullable=False),
    Column("description", String(1000), nullable=True),
    Column("document", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("account_id", "name", name="uq_managed_policies_account_name"),
)

policy_attachments = Table(
    "policy_attachments", metadata,
    Column("owner_arn", String(512), primary_key=True),  # a user or a group
    Column("policy_arn", String(512), ForeignKey("managed_policies.arn", ondelete="CASCADE"), primary_key=True),
)
Index("ix_policy_attachments_policy", policy_attachments.c.policy_arn)

inline_policies = Table(
    "inline_policies", metadata,
    Column("owner_arn", String(512), primary_key=True),  # a user or a group
    Column("name", String(128), primary_key=True),
    Column("document", Text, nullable=False),
)

audit_events = Table(
    "audit_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("principal_arn", String(512), nullable=False),
    Column("action", String(128), nullable=False),
    Column("resource", String(1024), nullable=False),
    Column("source_ip", String(64), nullable=False),
    Column("endpoint_id", String(64), nullable=False),
    Column("allowed", Boolean, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("policy", String(512), nullable=True),
    Column("statement", String(128), nullable=True),
)
Index("ix_audit_events_at", audit_events.c.at)

lifecycle_previews = Table(
    "lifecycle_previews", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("policy", Text, nullable=False),
    Column("status", String(16), nullable=False),  # IN_PROGRESS | COMPLETE | FAILED
    Column("results", JSON, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

# -- usage metering (storage/meta/metering.py) -------------------------------------------------------
# Repositories are named, not referenced by id: a bill outlives a deleted repository.

usage_transfer = Table(
    "usage_transfer", metadata,
    Column("hour", BigInteger, primary_key=True),  # start of the hour bucket, ms
    Column("account_id", String(12), primary_key=True),  # the registry the repository belongs to
    Column("repository", String(256), primary_key=True),
    Column("principal_arn", String(512), primary_key=True),  # "" when unknown
    Column("direction", String(8), primary_key=True),  # pull | push
    Column("network", String(16), primary_key=True),  # same_region | internet
    Column("bytes", BigInteger, nullable=False),
    Column("requests", BigInteger, nullable=False),
)
Index("ix_usage_transfer_account_hour", usage_transfer.c.account_id, usage_transfer.c.hour)

usage_storage = Table(
    "usage_storage", metadata,  # a row whenever a repository's storage changed (sampled hourly or more often)
    Column("account_id", String(12), primary_key=True),
    Column("repository", String(256), primary_key=True),
    Column("hour", BigInteger, primary_key=True),  # start of the hour the sample stands for, ms
    Column("billed_bytes", BigInteger, nullable=False),  # after splitting shared blobs among their holders
    Column("stored_bytes", BigInteger, nullable=False),  # everything the repository holds
    Column("shared_bytes", BigInteger, nullable=False),  # the part also held by other repositories
)

# -- vulnerability scans -----------------------------------------------------------------------------

image_scans = Table(
    "image_scans", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", String(160), primary_key=True),
    Column("status", String(32), nullable=False),  # IN_PROGRESS | COMPLETE | FAILED | UNSUPPORTED_IMAGE
    Column("description", Text, nullable=True),
    Column("requested_at", BigInteger, nullable=False),
    Column("completed_at", BigInteger, nullable=True),
    Column("source_updated_at", BigInteger, nullable=True),  # newest OSV `modified` when matched
    Column("vulndb_generation", String(128), nullable=True),
    Column("inventory", JSON, nullable=True),  # packages found (the SBOM's content), for re-matching
    Column("findings", JSON, nullable=True),
    Column("severity_counts", JSON, nullable=True),
)
