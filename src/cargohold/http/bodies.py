"""Reading request bodies with a hard size limit: the one place every face reads a whole body."""

from __future__ import annotations

from starlette.requests import Request

from cargohold.errors import Kind, RegistryError


async def read_limited(request: Request, limit: int, kind: Kind = Kind.TOO_LARGE) -> bytes:
    """The whole body, refusing early (by Content-Length) or as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise RegistryError(kind, f"request body exceeds {limit} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RegistryError(kind, f"request body exceeds {limit} bytes")
        parts.append(chunk)
    body = b"".join(parts)
    if declared.isdigit() and int(declared) != len(body):
        raise RegistryError(Kind.SIZE_INVALID, "body length does not match Content-Length")
    return body
