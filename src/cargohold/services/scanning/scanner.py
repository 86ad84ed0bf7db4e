"""The scanning engine: inventory an image, match it against the OSV index, record the result.

Scans run on a small thread pool in the server process (`submit`), never on the request
path: the push observer only puts the image on the queue. A scan reads the manifest, streams
the layers (layers.py), matches the inventory (domain/vulns) and stores status, inventory and
findings in one row. Continuous scanning re-matches stored inventories when the vulnerability
database changes, without reading layers again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cargohold.domain.inventory.packages import Inventory, finalize
from cargohold.domain.manifests import DOCKER_IMAGE_CONFIG, INDEX_TYPES, OCI_IMAGE_CONFIG, parse_manifest
from cargohold.domain.sbom import SBOM_MEDIA_TYPES, read_sbom
from cargohold.domain.vulns.matching import match, severity_counts
from cargohold.errors import RegistryError
from cargohold.services.content import ManifestPushed
from cargohold.services.scanning import feeds
from cargohold.services.scanning.layers import Layer, LayerWalker, Limits, ScanFailed
from cargohold.services.scanning.settings import RegistryScanning, RepositoryScanning, applies
from cargohold.storage.blobs.base import BlobStore
from cargohold.storage.meta.scans import ScanStore
from cargohold.storage.meta.store import ManifestRow, MetadataStore, Repository
from cargohold.storage.vulndb import ImportReport, VulnIndex

log = logging.getLogger("cargohold.scanning")

COMPLETE_TEXT = "The scan was completed successfully."
UNSUPPORTED_TEXT = "UnsupportedImageError: The operating system and/or package manager are not supported."
MAX_SBOM_BYTES = 64 << 20
STUCK_AFTER_MS = 30 * 60 * 1000


class Unsupported(Exception):
    """Not something a scan can look into (an index, a non-image artifact); message for the status."""


@dataclass(frozen=True)
class Outcome:
    status: str
    description: str
    findings: int = 0


def is_filesystem_layer(media_type: str) -> bool:
    return ".tar" in media_type or "rootfs.diff" in media_type or media_type.endswith(".layer.v1.tar")


class Scanner:
    def __init__(self, meta: MetadataStore, blobs: BlobStore, index: VulnIndex, *, limits: Limits | None = None,
                 workers: int = 1, clock: Callable[[], float] = time.time) -> None:
        self.meta = meta
        self.blobs = blobs
        self.store = ScanStore(meta)
        self.index = index
        self.limits = limits or Limits()
        self.workers = max(1, workers)
        self.clock = clock
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[tuple[int, str]] = set()
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- configuration ----------------------------------------------------------------------------

    def registry_scanning(self, account_id: str) -> RegistryScanning:
        try:
            return RegistryScanning.from_text(self.store.registry_configuration(account_id))
        except (ValueError, RegistryError):
            log.warning("ignoring an unreadable scanning configuration for %s", account_id)
            return RegistryScanning()

    def repository_scanning(self, repo: Repository, config: RegistryScanning | None = None) -> RepositoryScanning:
        return applies(config or self.registry_scanning(repo.account_id), repo.name, repo.scan_on_push)

    # -- the queue --------------------------------------------------------------------------------

    def on_push(self, event: ManifestPushed) -> None:
        """Push observer: queue a scan-on-push check; returns at once."""
        if event.media_type in INDEX_TYPES:
            return  # ECR scans images, not manifest lists: each child is scanned as it is pushed
        self.submit(event.repository.id, event.digest, on_push=True)

    def submit(self, repository_id: int, digest: str, *, on_push: bool = False) -> None:
        key = (repository_id, digest)
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cargohold-scan",
                                                initializer=_lower_priority)
            self._pool.submit(self._run, repository_id, digest, on_push)

    def _run(self, repository_id: int, digest: str, on_push: bool) -> None:
        try:
            if on_push and not self._wants_scan_on_push(repository_id, digest):
                return
            self.scan(repository_id, digest)
        except Exception:
            log.exception("scan of %s in repository %d failed", digest, repository_id)
        finally:
            with self._lock:
                self._pending.discard((repository_id, digest))

    def _wants_scan_on_push(self, repository_id: int, digest: str) -> bool:
        repo = self.store.repository(repository_id)
        if repo is None or not self.repository_scanning(repo).scan_on_push:
            return False
        existing = self.store.get(repository_id, digest, full=False)
        if existing is None or existing.status not in ("COMPLETE", "IN_PROGRESS"):
            return True
        row = self.meta.get_manifest(repository_id, digest, with_content=False)
        return row is not None and existing.requested_at < row.pushed_at  # deleted and pushed again

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """For tests and the CLI: wait until no scan is queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.02)
        return False

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # -- one scan ---------------------------------------------------------------------------------

    def scan(self, repository_id: int, digest: str) -> Outcome:
        row = self.meta.get_manifest(repository_id, digest, with_content=True)
        if row is None:
            return Outcome("FAILED", "The image no longer exists.")
        self.store.start(repository_id, digest, self.now_ms())
        try:
            inventory = self.inventory(repository_id, row)
        except Unsupported as exc:
            return self._finish(repository_id, digest, "UNSUPPORTED_IMAGE", str(exc))
        except ScanFailed as exc:
            return self._finish(repository_id, digest, "FAILED", str(exc))
        except Exception as exc:
            log.exception("scan of %s failed unexpectedly", digest)
            return self._finish(repository_id, digest, "FAILED",
                                f"The scan failed with an internal error: {type(exc).__name__}")
        if inventory.os is None and not inventory.packages:
            return self._finish(repository_id, digest, "UNSUPPORTED_IMAGE", UNSUPPORTED_TEXT,
                                inventory=inventory.to_json())
        with self.index.snapshot() as snap:
            findings = match(inventory, snap.lookup)
            wire = [f.wire() for f in findings]
            self.store.finish(repository_id, digest, status="COMPLETE", description=COMPLETE_TEXT,
                              now=self.now_ms(), source_updated_at=snap.updated_at_ms,
                              generation=snap.generation, inventory=inventory.to_json(), findings=wire,
                              severity_counts=severity_counts(findings))
        log.info("scan of %s: %d packages, %d findings", digest, len(inventory.packages), len(findings))
        return Outcome("COMPLETE", COMPLETE_TEXT, len(findings))

    def _finish(self, repository_id: int, digest: str, status: str, description: str,
                inventory: dict[str, Any] | None = None) -> Outcome:
        self.store.finish(repository_id, digest, status=status, description=description, now=self.now_ms(),
                          inventory=inventory)
        return Outcome(status, description)

    def inventory(self, repository_id: int, row: ManifestRow) -> Inventory:
        """What the image holds (raises Unsupported or ScanFailed)."""
        if row.media_type in INDEX_TYPES:
            raise Unsupported("UnsupportedImageError: an image index (manifest list) is not scanned itself; "
                              "each image it lists is scanned on its own.")
        try:
            parsed = parse_manifest(row.content or b"", row.media_type)
        except RegistryError as exc:
            raise ScanFailed(f"The manifest could not be read: {exc.message}") from None
        sbom_layers = [d for d in parsed.layers if d.media_type in SBOM_MEDIA_TYPES]
        if sbom_layers or (parsed.artifact_type or "") in SBOM_MEDIA_TYPES:
            return self._from_sbom(sbom_layers[0].digest if sbom_layers else "", parsed.layers)
        config_type = parsed.config.media_type if parsed.config else ""
        layers = [d for d in parsed.layers]
        if config_type not in (OCI_IMAGE_CONFIG, DOCKER_IMAGE_CONFIG) or not all(
                is_filesystem_layer(d.media_type) for d in layers):
            raise Unsupported("UnsupportedImageError: the artifact is not a container image "
                              f"(artifact type {parsed.artifact_type or config_type or 'unknown'}).")
        walk: list[Layer] = []
        for d in layers:
            if self.blobs.size(d.digest) is None:
                if "nondistributable" in d.media_type or "foreign" in d.media_type:
                    continue  # lives elsewhere (urls); nothing to read here
                raise ScanFailed(f"Layer {d.digest} is missing from storage.")
            walk.append(Layer(d.digest, d.size, d.media_type))
        walker = LayerWalker(self.blobs.read, self.limits)
        return finalize(walker.inventory(walk))

    def _from_sbom(self, digest: str, layers: list[Any]) -> Inventory:
        if not digest and layers:
            digest = layers[0].digest
        size = self.blobs.size(digest) if digest else None
        if size is None:
            raise ScanFailed("The SBOM blob is missing from storage.")
        if size > MAX_SBOM_BYTES:
            raise ScanFailed(f"The SBOM is larger than {MAX_SBOM_BYTES} bytes.")
        data = b"".join(self.blobs.read(digest))
        try:
            return read_sbom(data)
        except ValueError as exc:
            raise ScanFailed(f"The SBOM could not be read: {exc}") from None

    # -- the vulnerability database ---------------------------------------------------------------

    def import_vulndb(self, paths: list[Path], *, replace: bool = False,
                      progress: Callable[[int, int], None] | None = None) -> ImportReport:
        total = feeds.count(paths)
        report = self.index.import_records(feeds.records(paths), replace=replace,
                                           progress=(lambda done: progress(done, total)) if progress else None)
        self.rematch_continuous()
        return report

    def refresh(self, urls: list[str]) -> ImportReport | None:
        """Download every configured all.zip and import them as one new generation."""
        if not urls:
            return None
        downloads: list[Path] = []
        try:
            for url in urls:
                downloads.append(feeds.download(url, self.index.root / "downloads"))
            return self.import_vulndb(downloads)
        finally:
            feeds.cleanup(downloads)

    def rematch_continuous(self) -> int:
        """Re-match stored inventories of repositories under CONTINUOUS_SCAN against the live database."""
        changed = 0
        with self.index.snapshot() as snap:
            for account in self.store.accounts_with_configuration():
                config = self.registry_scanning(account)
                if not any(r.frequency == "CONTINUOUS_SCAN" for r in config.rules):
                    continue
                repos: list[Repository] = []
                after: str | None = None
                while True:
                    page = self.meta.list_repositories(account, after, 500)
                    if not page:
                        break
                    repos += [r for r in page if self.repository_scanning(r, config).continuous]
                    after = page[-1].name
                for repository_id, digest in self.store.completed_in([r.id for r in repos], snap.generation):
                    row = self.store.get(repository_id, digest)
                    if row is None or row.inventory is None:
                        continue
                    findings = match(Inventory.from_json(row.inventory), snap.lookup)
                    if self.store.rematched(repository_id, digest, generation=snap.generation,
                                            source_updated_at=snap.updated_at_ms,
                                            findings=[f.wire() for f in findings],
                                            severity_counts=severity_counts(findings), now=self.now_ms()):
                        changed += 1
        if changed:
            log.info("continuous scanning: %d image(s) re-evaluated", changed)
        return changed

    def requeue_stuck(self) -> int:
        """Scans left IN_PROGRESS by a process that died are started again."""
        stuck = self.store.stuck(self.now_ms() - STUCK_AFTER_MS)
        for repository_id, digest in stuck:
            self.submit(repository_id, digest)
        return len(stuck)


def _lower_priority() -> None:
    """Scan threads yield the CPU to request handling (Linux: per-thread nice value)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class ScanJobs:
    """Background upkeep in the server: refresh the database from its URLs, tidy results."""

    def __init__(self, scanner: Scanner, urls: list[str], refresh_interval: int, tidy_interval: int = 600) -> None:
        self.scanner = scanner
        self.urls = urls
        self.refresh_interval = refresh_interval
        self.tidy_interval = tidy_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="cargohold-scan-jobs", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.scanner.shutdown()

    def _loop(self) -> None:
        refresh_due = time.monotonic() + 5 if self.urls and self.refresh_interval > 0 else None
        tidy_due = time.monotonic() + 30
        while not self._stop.wait(1.0):
            now = time.monotonic()
            if refresh_due is not None and now >= refresh_due:
                try:
                    report = self._refresh_once()
                    if report is not None:
                        log.info("vulndb: refreshed, %d records (%d new or updated), updated %s",
                                 report.total, report.added, report.updated_at)
                except Exception:
                    log.exception("vulndb refresh failed")
                refresh_due = time.monotonic() + self.refresh_interval
            if now >= tidy_due:
                try:
                    self.scanner.store.prune()
                    self.scanner.requeue_stuck()
                except Exception:
                    log.exception("scan upkeep failed")
                tidy_due = time.monotonic() + self.tidy_interval

    def _refresh_once(self) -> ImportReport | None:
        """One process per data directory refreshes (the others see the new generation)."""
        import fcntl
        lock = self.scanner.index.root / "refresh.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            stamp = lock.with_suffix(".stamp")
            with contextlib.suppress(FileNotFoundError):
                if time.time() - stamp.stat().st_mtime < self.refresh_interval * 0.9:
                    return None  # another worker refreshed recently
            report = self.scanner.refresh(self.urls)
            stamp.write_text(json.dumps({"at": time.time()}))
            return report
        finally:
            os.close(fd)
