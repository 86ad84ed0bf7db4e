"""GET /api/usage: the usage and cost report as JSON (contract: docs/usage-api.md).

Authenticated like /v2 (Basic access key, or a Bearer / AWS login token) and authorized as
ecr:DescribeRepositories on arn:aws:ecr:<region>:<account>:repository/*. The account is the
registry addressed by the Host (<account>.<host>, as on /v2), else the caller's own account.
Errors are OCI-style JSON.

Also here: metering hooks for the ECR face's data-carrying operations (BatchGetImage,
PutImage, UploadLayerPart), wrapped around their handlers so operations.py stays unaware.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from cargohold.errors import Kind, RegistryError
from cargohold.http.context import ContextFactory
from cargohold.http.ecr.api import EcrApi, Handler
from cargohold.http.errors import challenges, oci_error
from cargohold.http.oci import registry_from_host
from cargohold.services.identity import Authorizer, Identity, ResourceFacts
from cargohold.services.metering import MAX_MONTHS, PULL, PUSH, Metering, UsageReports
from cargohold.services.repositories import Caller

log = logging.getLogger("cargohold.usage")

DEFAULT_MONTHS = 3
USAGE_ACTION = "ecr:DescribeRepositories"


def parse_months(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_MONTHS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_MONTHS:
        raise RegistryError(Kind.INVALID_PARAMETER,
                            f"months must be a whole number from 1 to {MAX_MONTHS}, got {raw[:20]!r}")
    return int(raw)


class UsageApi:
    def __init__(self, identity: Identity, authorizer: Authorizer, reports: UsageReports, region: str,
                 service: str, contexts: ContextFactory | None = None) -> None:
        self.identity = identity
        self.authorizer = authorizer
        self.reports = reports
        self.region = region
        self.service = service
        self.contexts = contexts or ContextFactory()

    def _report(self, request: Request) -> dict[str, Any]:
        principal = self.identity.authenticate_header(request.headers.get("authorization"))
        months = parse_months(request.query_params.get("months"))
        account = registry_from_host(request.headers.get("host", "")) or principal.account_id
        resource = f"arn:aws:ecr:{self.region}:{account}:repository/*"
        self.authorizer.authorize(principal, USAGE_ACTION, resource, self.contexts(request),
                                  ResourceFacts(account_id=account))
        return self.reports.report(account, months)

    async def handle(self, request: Request) -> Response:
        request_id = uuid.uuid4().hex
        head = request.method == "HEAD"
        try:
            if request.method not in ("GET", "HEAD"):
                return Response(json.dumps({"errors": [{"code": "UNSUPPORTED", "message": "method not allowed"}]}),
                                status_code=405, media_type="application/json", headers={"Allow": "GET, HEAD"})
            doc = await to_thread.run_sync(self._report, request)
            body = json.dumps(doc).encode()
            return Response(b"" if head else body, media_type="application/json",
                            headers={"Cache-Control": "no-store", "Content-Length": str(len(body))})
        except RegistryError as err:
            if err.kind is Kind.UNKNOWN:
                log.error("request %s failed: %s", request_id, err)
            host = request.headers.get("host") or self.service
            return oci_error(err, head=head, request_id=request_id,
                             challenge=challenges(f"{request.url.scheme}://{host}/token", self.service))
        except Exception:
            log.exception("usage request %s failed", request_id)
            return oci_error(RegistryError(Kind.UNKNOWN, f"internal error (request id {request_id})"),
                             head=head, request_id=request_id)


def meter_ecr(ecr: EcrApi, metering: Metering) -> None:
    """Count the bytes the ECR face's own data operations carry (layer downloads go through /download)."""

    def account(caller: Caller) -> str:
        return caller.registry_id or caller.principal.account_id

    def wrap(name: str, direction: str, size: Any) -> None:
        original: Handler | None = ecr.handlers.get(name)
        if original is None:
            return

        async def handler(caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
            result = await original(caller, params)
            metering.record(account(caller), params["repositoryName"], caller.principal.arn,
                            caller.context.source_ip, direction, size(params, result))
            return result

        ecr.handlers[name] = handler

    wrap("BatchGetImage", PULL,
         lambda p, r: sum(len(str(i.get("imageManifest", "")).encode()) for i in r.get("images", [])))
    wrap("PutImage", PUSH, lambda p, r: len(str(p.get("imageManifest", "")).encode()))
    wrap("UploadLayerPart", PUSH, lambda p, r: len(p.get("layerPartBlob") or b""))
