"""Scan status and findings for the console, from the scanning service (when the server has one)."""

from __future__ import annotations

from typing import Any

from cargohold.errors import Kind, RegistryError
from cargohold.http.console.pages import ScanDetail, ScanSummary
from cargohold.services.images import ImageId
from cargohold.services.repositories import Caller
from cargohold.services.scanning.service import ScanService
from cargohold.storage.meta.scans import ScanRow

MAX_FINDINGS = 1000


def _summary(row: ScanRow) -> ScanSummary:
    return ScanSummary(row.status, dict(row.severity_counts or {}), row.completed_at)


def _finding(f: dict[str, Any]) -> dict[str, Any]:
    attrs = {str(a.get("key")): str(a.get("value")) for a in f.get("attributes") or [] if isinstance(a, dict)}
    package = " ".join(p for p in (attrs.get("package_name"), attrs.get("package_version")) if p)
    return {"name": str(f.get("name", "")), "severity": str(f.get("severity", "UNDEFINED")).upper(),
            "uri": str(f["uri"]) if str(f.get("uri", "")).startswith(("https://", "http://")) else "",
            "description": str(f.get("description", "")), "package": package,
            "fixed": attrs.get("fixed_version", "")}


class ScanFindings:
    """The console's FindingsSource over ScanService, with the same authorization as the ECR operations."""

    def __init__(self, scans: ScanService) -> None:
        self.scans = scans

    def summaries(self, caller: Caller, name: str, digests: list[str]) -> dict[str, ScanSummary]:
        # As DescribeImages does: the listing (ecr:DescribeImages) was authorized just before.
        registry = self.scans.repos.registry_of(caller)
        return {d: _summary(row) for d, row in self.scans.summaries(registry, name, digests).items()}

    def detail(self, caller: Caller, name: str, digest: str) -> ScanDetail | None:
        try:
            page = self.scans.findings(caller, name, ImageId(digest=digest), 0, MAX_FINDINGS)
        except RegistryError as err:
            if err.kind is Kind.SCAN_NOT_FOUND:
                return None
            raise
        return ScanDetail(_summary(page.scan), [_finding(f) for f in page.findings], page.scan.description)

    def start(self, caller: Caller, name: str, digest: str) -> None:
        self.scans.start(caller, name, ImageId(digest=digest))
