"""GET /sbom/<repository>@<digest> or /sbom/<repository>:<tag> (?format=cyclonedx|spdx).

Not part of ECR's API: a plain HTTP download beside /v2, authenticated the same way (Basic
with an access key or a login token, or Bearer) and authorized as ecr:DescribeImageScanFindings.
"""

from __future__ import annotations

import json
import uuid

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from cargohold.errors import Kind, RegistryError
from cargohold.http.context import ContextFactory
from cargohold.http.errors import challenges, oci_error
from cargohold.http.oci import registry_from_host
from cargohold.services.identity import Identity
from cargohold.services.repositories import Caller
from cargohold.services.scanning.service import ScanService

MEDIA_TYPES = {"cyclonedx": "application/vnd.cyclonedx+json", "spdx": "application/spdx+json"}


def split_reference(text: str) -> tuple[str, str]:
    """'repo@sha256:…' or 'repo:tag' -> (repository, digest or tag)."""
    if "@" in text:
        name, _, ref = text.partition("@")
        return name, ref
    name, sep, tag = text.rpartition(":")
    if not sep or "/" in tag or not name:
        raise RegistryError(Kind.INVALID_PARAMETER, "expected REPOSITORY@DIGEST or REPOSITORY:TAG")
    return name, tag


class SbomApi:
    def __init__(self, identity: Identity, scans: ScanService, service: str, contexts: ContextFactory) -> None:
        self.identity = identity
        self.scans = scans
        self.service = service
        self.contexts = contexts

    async def handle(self, request: Request) -> Response:
        request_id = uuid.uuid4().hex
        host = request.headers.get("host") or self.service
        challenge = challenges(f"{request.url.scheme}://{host}/token", self.service)
        try:
            if request.method not in ("GET", "HEAD"):
                raise RegistryError(Kind.UNSUPPORTED, "method not allowed")
            fmt = request.query_params.get("format", "cyclonedx")
            name, reference = split_reference(request.scope["path"][len("/sbom/"):])

            def run() -> bytes:
                principal = self.identity.authenticate_header(request.headers.get("authorization"))
                caller = Caller(principal, self.contexts(request), registry_from_host(request.headers.get("host", "")))
                return json.dumps(self.scans.sbom(caller, name, reference, fmt), indent=2).encode()

            body = await to_thread.run_sync(run)
            return Response(b"" if request.method == "HEAD" else body, headers={"Content-Length": str(len(body))},
                            media_type=MEDIA_TYPES.get(fmt, "application/json"))
        except RegistryError as err:
            return oci_error(err, head=request.method == "HEAD", challenge=challenge, request_id=request_id)
