"""The ECR face: POST / with X-Amz-Target, JSON 1.1, SigV4 — dispatch, auth, validation, errors."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from cargohold.errors import Kind, RegistryError
from cargohold.http.bodies import read_limited
from cargohold.http.context import ContextFactory
from cargohold.http.ecr import model
from cargohold.http.ecr.sigv4 import verify
from cargohold.http.errors import ECR_ERROR_TYPE, ecr_error
from cargohold.services.identity import Identity
from cargohold.services.repositories import Caller

log = logging.getLogger("cargohold.ecr")

MAX_BODY = 32 * 1024 * 1024  # UploadLayerPart carries up to 20 MiB, base64-encoded
Handler = Callable[[Caller, dict[str, Any]], Awaitable[dict[str, Any]]]


class EcrApi:
    def __init__(self, identity: Identity, region: str, account_id: str,
                 clock: Callable[[], float] = time.time, contexts: ContextFactory | None = None) -> None:
        self.contexts = contexts or ContextFactory()
        self.identity = identity
        self.region = region
        self.account_id = account_id
        self.clock = clock
        self.handlers: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler) -> None:
        if model.operation(name) is None:
            raise ValueError(f"{name} is not an ECR operation in botocore's model")
        self.handlers[name] = handler

    def _secret_for(self, key_id: str) -> str | None:
        found = self.identity.principal_for_key(key_id)
        return found[1] if found else None

    def authenticate(self, request: Request, body: bytes) -> Caller:
        signed = verify(request.method, request.url.path, request.url.query, request.headers, body,
                        self._secret_for, now=self.clock(), region=self.region, services=("ecr",))
        found = self.identity.principal_for_key(signed.access_key_id)
        if found is None:
            raise RegistryError(Kind.UNRECOGNIZED_CLIENT, "The security token included in the request is invalid.")
        return Caller(found[0], self.contexts(request))

    async def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            target = request.headers.get("x-amz-target", "")
            prefix, _, name = target.partition(".")
            if prefix != model.TARGET_PREFIX or not name:
                raise RegistryError(Kind.UNKNOWN_OPERATION, f"Unknown operation {target[:100]!r}")
            op = model.operation(name)
            if op is None:
                raise RegistryError(Kind.UNKNOWN_OPERATION, f"Unknown operation {name[:100]!r}")
            body = await read_limited(request, MAX_BODY, Kind.SERIALIZATION)
            caller = await to_thread.run_sync(self.authenticate, request, body)
            handler = self.handlers.get(name)
            if handler is None:
                raise RegistryError(Kind.NOT_IMPLEMENTED,
                                    f"The operation {name} is not implemented by cargohold yet")
            try:
                doc = json.loads(body or b"{}")
            except ValueError:
                raise RegistryError(Kind.SERIALIZATION, "Request body is not valid JSON") from None
            if not isinstance(doc, dict):
                raise RegistryError(Kind.SERIALIZATION, "Request body must be a JSON object")
            params = model.validate_input(op, doc)
            # registryId addresses another account's registry; the policy engine decides.
            caller = Caller(caller.principal, caller.context,
                            params.get("registryId") or caller.principal.account_id)
            result = await handler(caller, params)
            return Response(json.dumps(result, default=_json_default).encode(), media_type=ECR_ERROR_TYPE,
                            headers={"x-amzn-RequestId": request_id})
        except RegistryError as err:
            if err.kind is Kind.UNKNOWN:
                log.error("request %s failed: %s", request_id, err)
            return ecr_error(err, request_id=request_id)
        except Exception:
            log.exception("ECR request %s failed", request_id)
            return ecr_error(RegistryError(Kind.UNKNOWN, f"internal error (request id {request_id})"),
                             request_id=request_id)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        import base64
        return base64.b64encode(value).decode()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
