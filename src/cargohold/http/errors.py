"""One place that renders a RegistryError as OCI error JSON or as an ECR exception."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from cargohold.errors import RegistryError

OCI_ERROR_TYPE = "application/json"
ECR_ERROR_TYPE = "application/x-amz-json-1.1"


def challenges(token_realm: str, service: str) -> list[str]:
    """WWW-Authenticate values for a 401: Bearer (Docker token auth) first, Basic as well."""
    return [f'Bearer realm="{token_realm}",service="{service}"', f'Basic realm="cargohold",service="{service}"']


def oci_error(err: RegistryError, *, head: bool = False, challenge: list[str] | None = None,
              request_id: str = "") -> Response:
    row = err.row
    entry: dict[str, Any] = {"code": row.oci_code, "message": err.message}
    if err.detail is not None:
        entry["detail"] = err.detail
    body = json.dumps({"errors": [entry]}).encode()
    headers = dict(err.headers)
    if request_id:
        headers["X-Request-Id"] = request_id
    headers["Docker-Distribution-API-Version"] = "registry/2.0"
    if head:
        headers["Content-Length"] = str(len(body))
    response = Response(b"" if head else body, status_code=row.oci_status, headers=headers,
                        media_type=OCI_ERROR_TYPE)
    if err.row.oci_status == 401 and challenge:
        response.raw_headers.extend((b"www-authenticate", value.encode()) for value in challenge)
    return response


def ecr_error(err: RegistryError, *, request_id: str = "") -> Response:
    row = err.row
    body: dict[str, Any] = {"__type": row.ecr_exception, "message": err.message}
    if isinstance(err.detail, dict):  # extra members some ECR exceptions carry
        body.update(err.detail.get("ecr_fields", {}))
    headers = {"x-amzn-RequestId": request_id} if request_id else {}
    return Response(json.dumps(body).encode(), status_code=row.ecr_status, headers=headers,
                    media_type=ECR_ERROR_TYPE)
