"""Scanning use cases as callers see them: start a scan, read findings, settings, SBOMs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cargohold.domain.digests import is_digest
from cargohold.domain.inventory.packages import Inventory
from cargohold.domain.manifests import INDEX_TYPES
from cargohold.domain.names import is_tag
from cargohold.domain.sbom import render
from cargohold.errors import Kind, RegistryError
from cargohold.services.images import ImageId
from cargohold.services.repositories import Caller, Repositories
from cargohold.services.scanning import settings
from cargohold.services.scanning.scanner import Scanner
from cargohold.services.scanning.settings import RegistryScanning, RepositoryScanning
from cargohold.storage.meta.scans import ScanRow
from cargohold.storage.meta.store import Repository

SBOM_FORMATS = ("cyclonedx", "spdx")


@dataclass(frozen=True)
class FindingsPage:
    repository: Repository
    digest: str
    tag: str | None
    scan: ScanRow
    findings: list[dict[str, Any]]
    next_offset: int | None


def _image_text(image: ImageId) -> str:
    return f"{{imageDigest:'{image.digest or 'null'}', imageTag:'{image.tag or 'null'}'}}"


class ScanService:
    def __init__(self, repos: Repositories, scanner: Scanner) -> None:
        self.repos = repos
        self.scanner = scanner
        self.meta = repos.meta

    # -- images ---------------------------------------------------------------------------------

    def _digest(self, repo: Repository, image: ImageId) -> str:
        digest: str | None = None
        if image.tag is not None:
            if not is_tag(image.tag):
                raise RegistryError(Kind.INVALID_PARAMETER, "Invalid parameter at 'imageId.imageTag'")
            digest = self.meta.tag_digest(repo.id, image.tag)
            if digest is not None and image.digest and image.digest != digest:
                digest = None
        elif image.digest is not None:
            if not is_digest(image.digest):
                raise RegistryError(Kind.INVALID_PARAMETER, "Invalid parameter at 'imageId.imageDigest'")
            digest = image.digest
        else:
            raise RegistryError(Kind.INVALID_PARAMETER,
                                "Invalid parameter at 'imageId': an image digest or tag is required")
        if digest is None or self.meta.get_manifest(repo.id, digest, with_content=False) is None:
            raise RegistryError(Kind.MANIFEST_UNKNOWN,
                                f"The image with imageId {_image_text(image)} does not exist within the repository "
                                f"with name '{repo.name}' in the registry with id '{repo.account_id}'")
        return digest

    def start(self, caller: Caller, name: str, image: ImageId) -> tuple[Repository, str, str, str]:
        """StartImageScan: (repository, digest, status, description)."""
        repo = self.repos.resolve(caller, name, "ecr:StartImageScan")
        digest = self._digest(repo, image)
        row = self.meta.get_manifest(repo.id, digest, with_content=True)
        assert row is not None
        if row.media_type in INDEX_TYPES:
            raise RegistryError(Kind.UNSUPPORTED, "The image is of a type that cannot be scanned: an image index "
                                "(manifest list) is not scanned itself; scan the images it lists.")
        self.scanner.store.start(repo.id, digest, self.scanner.now_ms())
        self.scanner.submit(repo.id, digest)
        return repo, digest, "IN_PROGRESS", "The scan is in progress."

    def findings(self, caller: Caller, name: str, image: ImageId, offset: int, limit: int) -> FindingsPage:
        repo = self.repos.resolve(caller, name, "ecr:DescribeImageScanFindings")
        digest = self._digest(repo, image)
        scan = self.scanner.store.get(repo.id, digest)
        if scan is None:
            raise RegistryError(Kind.SCAN_NOT_FOUND,
                                f"Image scan does not exist for the image with '{_image_text(image)}' in the "
                                f"repository with name '{repo.name}' in the registry with id '{repo.account_id}'")
        rows = scan.findings or []
        page = rows[offset:offset + limit]
        more = offset + limit < len(rows)
        return FindingsPage(repo, digest, image.tag, scan, page, offset + limit if more else None)

    def summaries(self, registry: str, name: str, digests: list[str]) -> dict[str, ScanRow]:
        """For DescribeImages (the caller was authorized for the listing already)."""
        repo = self.meta.get_repository(registry, name)
        if repo is None or not digests:
            return {}
        return self.scanner.store.summaries(repo.id, digests)

    # -- settings -------------------------------------------------------------------------------

    def _authorize_registry(self, caller: Caller, action: str) -> str:
        registry = self.repos.registry_of(caller)
        self.repos.authorizer.authorize(caller.principal, action,
                                        f"arn:aws:ecr:{self.repos.region}:{registry}:registry/{registry}",
                                        caller.context)
        return registry

    def put_registry(self, caller: Caller, params: dict[str, Any]) -> RegistryScanning:
        registry = self._authorize_registry(caller, "ecr:PutRegistryScanningConfiguration")
        config = settings.parse(params)
        self.scanner.store.put_registry_configuration(registry, config.to_text())
        return config

    def get_registry(self, caller: Caller) -> tuple[str, RegistryScanning]:
        registry = self._authorize_registry(caller, "ecr:GetRegistryScanningConfiguration")
        return registry, self.scanner.registry_scanning(registry)

    def repositories(self, caller: Caller, names: list[str]
                     ) -> tuple[list[tuple[Repository, RepositoryScanning]], list[tuple[str, str, str]]]:
        config = self.scanner.registry_scanning(self.repos.registry_of(caller))
        found, failures = [], []
        for name in dict.fromkeys(names):
            try:
                repo = self.repos.resolve(caller, name, "ecr:BatchGetRepositoryScanningConfiguration")
            except RegistryError as err:
                if err.kind is not Kind.NAME_UNKNOWN:
                    raise
                failures.append((name, "REPOSITORY_NOT_FOUND", "REPOSITORY_NOT_FOUND"))
                continue
            found.append((repo, self.scanner.repository_scanning(repo, config)))
        return found, failures

    # -- SBOMs ----------------------------------------------------------------------------------

    def sbom(self, caller: Caller, name: str, reference: str, fmt: str = "cyclonedx") -> dict[str, Any]:
        repo = self.repos.resolve(caller, name, "ecr:DescribeImageScanFindings")
        return self.document(repo, reference, fmt)

    def document(self, repo: Repository, reference: str, fmt: str = "cyclonedx") -> dict[str, Any]:
        if fmt not in SBOM_FORMATS:
            raise RegistryError(Kind.INVALID_PARAMETER, f"Unknown SBOM format {fmt[:40]!r}: use cyclonedx or spdx")
        image = ImageId(digest=reference) if ":" in reference else ImageId(tag=reference)
        digest = self._digest(repo, image)
        scan = self.scanner.store.get(repo.id, digest)
        if scan is None or scan.inventory is None:
            raise RegistryError(Kind.SCAN_NOT_FOUND,
                                f"No SBOM for {repo.name}@{digest}: the image has not been scanned "
                                "(StartImageScan, or push it to a repository with scan on push)")
        return render(fmt, Inventory.from_json(scan.inventory), image=repo.name, digest=digest,
                      created_ms=scan.completed_at or scan.requested_at)
