"""Composition root: config -> stores -> services -> the ASGI application."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from cargohold.config import Config, load_config
from cargohold.domain.cost import Prices
from cargohold.http.console import build_console
from cargohold.http.context import ContextFactory
from cargohold.http.ecr.api import EcrApi
from cargohold.http.ecr.operations import EcrOperations
from cargohold.http.ecr.policy_operations import EcrPolicyOperations
from cargohold.http.ecr.scan_operations import EcrScanOperations, ScanLookup
from cargohold.http.iam import IamApi
from cargohold.http.oci import OciApi
from cargohold.http.sbom import SbomApi
from cargohold.http.usage import UsageApi, meter_ecr
from cargohold.memory import keep_freed_buffers
from cargohold.services.authorization import AuditLog, PolicyAuthorizer
from cargohold.services.content import Content
from cargohold.services.gc import GarbageCollector
from cargohold.services.iam import Iam
from cargohold.services.identity import Authorizer, Identity
from cargohold.services.images import Images
from cargohold.services.lifecycle import Lifecycle
from cargohold.services.metering import Metering, NetworkClassifier, UsageReports
from cargohold.services.policies import Policies
from cargohold.services.repositories import Repositories, RepositoryAdmin
from cargohold.services.scanning.layers import Limits
from cargohold.services.scanning.scanner import ScanJobs, Scanner
from cargohold.services.scanning.service import ScanService
from cargohold.services.secrets import SecretBox, load_or_create_master_key
from cargohold.services.uploads import Uploads
from cargohold.storage.blobs.fs import FilesystemBlobStore
from cargohold.storage.meta.engine import make_engine, migrate, sqlite_url
from cargohold.storage.meta.iam import IamStore
from cargohold.storage.meta.metering import MeteringStore
from cargohold.storage.meta.store import MetadataStore
from cargohold.storage.vulndb import VulnIndex

log = logging.getLogger("cargohold")


@dataclass
class Services:
    config: Config
    meta: MetadataStore
    blobs: FilesystemBlobStore
    box: SecretBox
    identity: Identity
    authorizer: Authorizer
    repositories: Repositories
    uploads: Uploads
    content: Content
    admin: RepositoryAdmin
    images: Images
    iam: Iam
    gc: GarbageCollector
    policies: Policies
    lifecycle: Lifecycle
    metering: Metering | None = None  # usage metering (transfer counters, storage samples)
    usage: UsageReports | None = None
    scans: ScanService | None = None  # vulnerability scanning (scan on push, findings, SBOMs)


def build_services(config: Config, *, run_migrations: bool = True,
                   clock: Callable[[], float] = time.time) -> Services:
    data = config.data_path
    data.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.database_url or sqlite_url(data))
    if run_migrations:
        migrate(engine)
    meta = MetadataStore(engine)
    blobs = FilesystemBlobStore(data)
    box = SecretBox(load_or_create_master_key(data, config.secret_key))
    identity = Identity(meta, box, config.account_id, clock)
    iam_store = IamStore(meta)
    audit = AuditLog(iam_store, enabled=config.audit)
    authorizer = PolicyAuthorizer(iam_store, config.account_id, audit, clock)
    repositories = Repositories(meta, authorizer, config.account_id, config.region,
                                config.create_on_push, clock, box)
    content = Content(meta, blobs, repositories, link_refresh_ms=config.gc_grace * 500)
    services = Services(config, meta, blobs, box, identity, authorizer, repositories,
                    Uploads(meta, blobs, repositories), content, RepositoryAdmin(repositories),
                    Images(meta, repositories, content), Iam(iam_store, identity, authorizer),
                    GarbageCollector(meta, blobs, grace_seconds=config.gc_grace,
                                     upload_max_age=config.upload_max_age, clock=clock,
                                     lock_path=data / "gc.lock"),
                    Policies(repositories), Lifecycle(meta, repositories, iam_store, clock))
    metering_store = MeteringStore(meta)
    services.metering = Metering(metering_store, NetworkClassifier(config.same_region_networks), clock,
                                 flush_seconds=config.metering_flush_seconds,
                                 snapshot_seconds=config.metering_snapshot_seconds, lock_path=data / "metering.lock")
    services.usage = UsageReports(metering_store, Prices(config.price_storage_gb_month,
                                                         config.price_transfer_internet_gb), clock)
    scanner = Scanner(meta, blobs, VulnIndex(data / "vulndb"), workers=config.scan_workers, clock=clock,
                      limits=Limits(max_layer_bytes=config.scan_max_layer_bytes,
                                    max_file_bytes=config.scan_max_file_bytes))
    services.scans = ScanService(repositories, scanner)
    content.push_observers.append(scanner.on_push)
    return services


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cargohold_http_requests_total", "HTTP requests",
                                ["face", "method", "status"], registry=self.registry)
        self.latency = Histogram("cargohold_http_request_seconds", "HTTP request latency",
                                 ["face"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30))
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[str, Any] = {}

    def record(self, face: str, method: str, status: int, seconds: float) -> None:
        """Count one request; the labelled children are looked up once (labels() takes a lock).
        Methods outside HTTP's usual set count as OTHER, so clients cannot mint label values."""
        if method not in _METHODS:
            method = "OTHER"
        key = (face, method, status)
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.requests.labels(face, method, str(status))
        counter.inc()
        timer = self._timed.get(face)
        if timer is None:
            timer = self._timed[face] = self.latency.labels(face)
        timer.observe(seconds)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


AUDIT_PURGE_INTERVAL = 3600  # seconds between purges of audit decisions past their retention


class BackgroundJobs:
    """Periodic maintenance (GC, lifecycle, audit retention) in a daemon thread; a file lock picks
    one runner per data dir."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        cfg = services.config
        intervals = {"gc": cfg.gc_interval, "lifecycle": cfg.lifecycle_interval,
                     "audit": AUDIT_PURGE_INTERVAL if cfg.audit_retention_days > 0 else 0}
        self.intervals = {job: seconds for job, seconds in intervals.items() if seconds > 0}

    def start(self) -> None:
        if self.intervals and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="cargohold-jobs", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        now = time.monotonic()
        due = {job: now + seconds for job, seconds in self.intervals.items()}
        while not self._stop.wait(min(1.0, max(0.05, min(due.values()) - now))):
            now = time.monotonic()
            for job, when in due.items():
                if now < when:
                    continue
                try:
                    self.run(job)
                except Exception:
                    log.exception("background %s failed", job)
                due[job] = time.monotonic() + self.intervals[job]

    def run(self, job: str) -> None:
        gc = self.services.gc
        with gc.exclusive(wait=False) as mine:  # one maintenance runner at a time
            if not mine:
                return
            if job == "gc":
                report = gc.run()
                log.info("gc: %d blobs (%d bytes) freed, %d uploads purged in %.1fs",
                         report.blobs_deleted, report.bytes_freed, report.uploads_purged, report.seconds)
            elif job == "lifecycle":
                expired = self.services.lifecycle.run()
                log.info("lifecycle: %d images expired", sum(1 for e in expired if e.deleted))
            else:
                days = self.services.config.audit_retention_days
                cutoff = int((self.services.identity.clock() - days * 86400) * 1000)
                purged = self.services.iam.store.purge_events(cutoff)
                if purged:
                    log.info("audit: %d decisions older than %d days purged", purged, days)


class CargoholdApp:
    """The ASGI application: one port, dispatched by path to each face."""

    def __init__(self, services: Services) -> None:
        self.services = services
        cfg = services.config
        contexts = ContextFactory(cfg.endpoint_id, cfg.trusted_proxies)
        self.oci = OciApi(services.identity, services.content, services.uploads,
                          service=cfg.public_host, max_page=cfg.max_tags_page * 10, contexts=contexts,
                          meter=services.metering,
                          inline_reads=services.meta.engine.dialect.name == "sqlite")
        self.metrics = Metrics()
        self.jobs = BackgroundJobs(services)
        self.ecr = EcrApi(services.identity, cfg.region, cfg.account_id, services.identity.clock, contexts)
        self.iam = IamApi(services.identity, services.iam, cfg.region, services.identity.clock, contexts)
        EcrPolicyOperations(self.ecr, services.policies, services.lifecycle)
        operations = EcrOperations(self.ecr, services.identity, services.admin, services.images, services.uploads,
                                   cfg.public_host, "https" if cfg.tls_enabled else "http")
        self.sbom: SbomApi | None = None
        self.scan_jobs: ScanJobs | None = None
        if services.scans is not None:
            EcrScanOperations(self.ecr, services.scans)
            operations.image_extras = ScanLookup(services.scans)
            self.sbom = SbomApi(services.identity, services.scans, cfg.public_host, contexts)
            self.scan_jobs = ScanJobs(services.scans.scanner, cfg.vulndb_urls, cfg.vulndb_refresh_interval)
        self.usage = UsageApi(services.identity, services.authorizer, services.usage, cfg.region, cfg.public_host,
                              contexts) if services.usage is not None else None
        if services.metering is not None:
            meter_ecr(self.ecr, services.metering)
        self.console = build_console(services, self, contexts)  # /console: pages over the same services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        started = time.perf_counter()
        status_holder: dict[str, Any] = {}

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        if path.startswith("/v2"):
            face = "oci"
            response = await self.oci.handle(Request(scope, receive))
        elif path == "/" and scope["method"] == "POST":
            request = Request(scope, receive)
            if "x-amz-target" in request.headers:
                face = "ecr"
                response = await self.ecr.handle(request)
            else:
                face = "iam"
                response = await self.iam.handle(request)
        elif path.startswith("/download/"):
            face = "download"
            response = await self.oci.download(Request(scope, receive), path[len("/download/"):])
        elif path == "/token":
            face = "token"
            response = await self.oci.token(Request(scope, receive))
        elif path == "/api/usage" and self.usage is not None:
            face = "usage"
            response = await self.usage.handle(Request(scope, receive))
        elif path == "/console" or path.startswith("/console/"):
            face = "console"
            response = await self.console.handle(Request(scope, receive))
        elif path.startswith("/sbom/") and self.sbom is not None:
            face = "sbom"
            response = await self.sbom.handle(Request(scope, receive))
        elif path == "/healthz":
            face = "health"
            response = JSONResponse({"status": "ok"})
        elif path == "/metrics":
            face = "metrics"
            response = self.metrics.render()
        else:
            face = "other"
            response = JSONResponse({"errors": [{"code": "NOT_FOUND", "message": "not found"}]},
                                    status_code=404)
        await response(scope, receive, send_wrapper)
        self.metrics.record(face, scope["method"], status_holder.get("status", 0), time.perf_counter() - started)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.jobs.start()
                if self.scan_jobs is not None:
                    self.scan_jobs.start()
                if self.services.metering is not None:
                    self.services.metering.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.jobs.stop()
                if self.scan_jobs is not None:
                    self.scan_jobs.stop()
                if self.services.metering is not None:
                    self.services.metering.stop()  # writes the counters still in memory
                authorizer = self.services.authorizer
                if isinstance(authorizer, PolicyAuthorizer):
                    authorizer.audit.flush()
                self.services.meta.engine.dispose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(config: Config | None = None, *, run_migrations: bool = True) -> CargoholdApp:
    return CargoholdApp(build_services(config or load_config(), run_migrations=run_migrations))


def worker_app() -> CargoholdApp:
    """Factory for server worker processes: config from CARGOHOLD_* set by `cargohold serve`."""
    # Shorter GIL hand-offs between the event loop and worker threads (default 5 ms): a thread
    # finishing a request's work should not wait a whole interval for the loop to let go.
    sys.setswitchinterval(0.0005)
    keep_freed_buffers()
    # anyio imports its asyncio backend on the first to_thread call: ~30 ms the first request of
    # every worker would otherwise wait for.
    importlib.import_module("anyio._backends._asyncio")
    return create_app(load_config(), run_migrations=False)
