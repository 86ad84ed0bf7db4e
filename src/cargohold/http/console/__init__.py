"""The web console at /console: server-rendered pages over the same services and policy engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from cargohold.http.console.pages import Console, ConsoleDeps, FindingsSource
from cargohold.http.console.scans import ScanFindings
from cargohold.http.console.session import Sessions
from cargohold.http.console.usage import InProcessUsageApi
from cargohold.http.context import ContextFactory
from cargohold.services.usage import StorageUsage

if TYPE_CHECKING:
    from cargohold.app import Services

__all__ = ["Console", "ConsoleDeps", "build_console"]


def build_console(services: Services, app: ASGIApp, contexts: ContextFactory) -> Console:
    """The console for a composition root; `app` answers the usage API (GET /api/usage) in process.
    Scan findings show when the server has a scanning service."""
    cfg = services.config
    findings: FindingsSource | None = ScanFindings(services.scans) if services.scans is not None else None
    return Console(ConsoleDeps(
        identity=services.identity, sessions=Sessions(services.box), contexts=contexts, admin=services.admin,
        images=services.images, policies=services.policies, lifecycle=services.lifecycle,
        storage=StorageUsage(services.meta), public_host=cfg.public_host,
        scheme="https" if cfg.tls_enabled else "http", region=cfg.region,
        usage=InProcessUsageApi(app), findings=findings))
