"""ECR operations for image scanning: scans, findings and scanning configuration."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cargohold.errors import Kind, RegistryError
from cargohold.http.ecr.api import EcrApi
from cargohold.http.ecr.operations import _run, _seconds
from cargohold.services.images import ImageId
from cargohold.services.repositories import Caller
from cargohold.services.scanning.service import ScanService
from cargohold.storage.meta.scans import ScanRow


def _offset_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _offset(params: dict[str, Any]) -> int:
    token = params.get("nextToken")
    if token is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["o"]
        if not isinstance(offset, int) or offset < 0:
            raise ValueError
        return offset
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise RegistryError(Kind.INVALID_PARAMETER, "Invalid parameter at 'nextToken' failed to satisfy constraint: "
                            "'Invalid pagination token'") from None


def scan_status(row: ScanRow) -> dict[str, Any]:
    return {"status": row.status, "description": row.description or ""}


def findings_summary(row: ScanRow) -> dict[str, Any] | None:
    if row.status != "COMPLETE":
        return None
    out: dict[str, Any] = {"imageScanCompletedAt": _seconds(row.completed_at),
                           "findingSeverityCounts": row.severity_counts or {}}
    if row.source_updated_at is not None:
        out["vulnerabilitySourceUpdatedAt"] = _seconds(row.source_updated_at)
    return out


class ScanLookup:
    """DescribeImages' extra members (imageScanStatus, imageScanFindingsSummary) per image digest."""

    def __init__(self, scans: ScanService) -> None:
        self.scans = scans

    def __call__(self, registry: str, name: str, digests: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for digest, row in self.scans.summaries(registry, name, digests).items():
            extra: dict[str, Any] = {"imageScanStatus": scan_status(row)}
            summary = findings_summary(row)
            if summary is not None:
                extra["imageScanFindingsSummary"] = summary
            out[digest] = extra
        return out


class EcrScanOperations:
    def __init__(self, api: EcrApi, scans: ScanService) -> None:
        self.scans = scans
        for name in dir(self):
            if name[:1].isupper():
                api.register(name, getattr(self, name))

    def registry(self, caller: Caller) -> str:
        return self.scans.repos.registry_of(caller)

    async def StartImageScan(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        image = ImageId(p["imageId"].get("imageDigest"), p["imageId"].get("imageTag"))
        repo, digest, status, description = await _run(self.scans.start, caller, p["repositoryName"], image)
        image_id = {"imageDigest": digest}
        if image.tag:
            image_id["imageTag"] = image.tag
        return {"registryId": repo.account_id, "repositoryName": repo.name, "imageId": image_id,
                "imageScanStatus": {"status": status, "description": description}}

    async def DescribeImageScanFindings(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        image = ImageId(p["imageId"].get("imageDigest"), p["imageId"].get("imageTag"))
        limit = min(int(p.get("maxResults") or 100), 1000)
        page = await _run(self.scans.findings, caller, p["repositoryName"], image, _offset(p), limit)
        image_id = {"imageDigest": page.digest}
        if page.tag:
            image_id["imageTag"] = page.tag
        out: dict[str, Any] = {"registryId": page.repository.account_id, "repositoryName": page.repository.name,
                               "imageId": image_id, "imageScanStatus": scan_status(page.scan)}
        summary = findings_summary(page.scan)
        if summary is not None:
            out["imageScanFindings"] = {**summary, "findings": page.findings}
        if page.next_offset is not None:
            out["nextToken"] = _offset_token(page.next_offset)
        return out

    async def PutRegistryScanningConfiguration(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        config = await _run(self.scans.put_registry, caller, p)
        return {"registryScanningConfiguration": config.wire()}

    async def GetRegistryScanningConfiguration(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        registry, config = await _run(self.scans.get_registry, caller)
        return {"registryId": registry, "scanningConfiguration": config.wire()}

    async def BatchGetRepositoryScanningConfiguration(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        found, failures = await _run(self.scans.repositories, caller, p["repositoryNames"])
        return {
            "scanningConfigurations": [{
                "repositoryArn": self.scans.repos.arn(repo.name, repo.account_id), "repositoryName": repo.name,
                "scanOnPush": applied.scan_on_push, "scanFrequency": applied.frequency,
                "appliedScanFilters": [{"filter": f, "filterType": "WILDCARD"} for f in applied.filters],
            } for repo, applied in found],
            "failures": [{"repositoryName": n, "failureCode": c, "failureReason": r} for n, c, r in failures],
        }
