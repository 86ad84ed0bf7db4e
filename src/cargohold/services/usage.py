"""Storage accounting: what each repository stores, what it alone holds, and the registry on disk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cargohold.storage.meta.store import MetadataStore


@dataclass(frozen=True)
class StorageReport:
    repositories: list[dict[str, Any]]
    blob_count: int
    deduplicated_bytes: int  # every blob once: what the registry needs on disk

    @property
    def logical_bytes(self) -> int:
        """What the repositories would need without deduplication."""
        return sum(r["stored_bytes"] for r in self.repositories)


class StorageUsage:
    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta

    def report(self) -> StorageReport:
        blobs, stored = self.meta.storage_totals()
        return StorageReport(self.meta.repository_usage(), blobs, stored)
