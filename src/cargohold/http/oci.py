"""The /v2 face: OCI Distribution v1.1 routes as thin adapters over the services.

Status and headers are decided before a body starts streaming; blob downloads are streamed in
large pieces, read on the event loop when they are in the page cache (see FileSend).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote, urlencode

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cargohold.domain.manifests import MAX_MANIFEST_BYTES, OCI_INDEX
from cargohold.domain.names import check_repository_name
from cargohold.errors import Kind, RegistryError
from cargohold.http.bodies import read_limited
from cargohold.http.context import ContextFactory
from cargohold.http.errors import challenges, oci_error
from cargohold.services.content import Content
from cargohold.services.identity import Identity
from cargohold.services.metering import PULL, PUSH, Metering
from cargohold.services.repositories import Caller
from cargohold.services.uploads import Uploads, range_headers
from cargohold.storage.blobs.base import BlobReader

log = logging.getLogger("cargohold.oci")
T = TypeVar("T")

API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}
# Routes by what the path ends with, tried in this order. The repository name is everything between
# "/v2/" and that ending (at least one character, no "?" or "#"); a route with a parameter takes the
# last path segment. Plain string tests: the equivalent regexes ("/v2/(?P<name>[^?#]+)/blobs/
# (?P<digest>[^/]+)", ...) backtrack over the whole path once per route and cost a tenth of a small
# request. tests/unit/test_routes.py holds those regexes and checks that both agree.
_ROUTE_ENDINGS: list[tuple[str, str, str]] = [  # (kind, ending, the last segment's parameter or "")
    ("manifest", "/manifests/", "ref"),
    ("uploads", "/blobs/uploads", ""),
    ("uploads", "/blobs/uploads/", ""),
    ("upload", "/blobs/uploads/", "upload"),
    ("blob", "/blobs/", "digest"),
    ("tags", "/tags/list", ""),
    ("referrers", "/referrers/", "digest"),
]


def _strict_route(path: str) -> tuple[str, dict[str, str]] | None:
    if not path.startswith("/v2/"):
        return None
    cut = path.rfind("/") + 1  # where the last segment starts
    for kind, ending, param in _ROUTE_ENDINGS:
        if param:
            if cut < len(path) and path.endswith(ending, 0, cut):
                name = path[4:cut - len(ending)]
                if _is_name(name):
                    return kind, {"name": name, param: path[cut:]}
        elif path.endswith(ending):
            name = path[4:len(path) - len(ending)]
            if _is_name(name):
                return kind, {"name": name}
    return None


def _is_name(name: str) -> bool:
    return bool(name) and "?" not in name and "#" not in name


# When no strict route matches, a lenient one still names the offending part in the error.
_LENIENT = re.compile(r"/v2/(?P<name>.+?)/(?P<kind>manifests|blobs|referrers)/(?P<rest>.+)")
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_ALLOWED = {
    "base": ("GET", "HEAD"), "catalog": ("GET", "HEAD"), "manifest": ("GET", "HEAD", "PUT", "DELETE"),
    "uploads": ("POST",), "upload": ("GET", "PATCH", "PUT", "DELETE"), "blob": ("GET", "HEAD", "DELETE"),
    "tags": ("GET", "HEAD"), "referrers": ("GET", "HEAD"),
}
MAX_PAGE = 10_000


def registry_from_host(host: str) -> str:
    """ECR-style addressing: a Host of <12-digit account>.<anything> names that account's registry."""
    label = host.split(".", 1)[0]
    return label if "." in host and len(label) == 12 and label.isdigit() else ""


def match_route(path: str) -> tuple[str, dict[str, str]]:
    if path in ("/v2", "/v2/"):
        return "base", {}
    if path in ("/v2/_catalog", "/v2/_catalog/"):
        return "catalog", {}
    found = _strict_route(path)
    if found is not None:
        return found
    m = _LENIENT.fullmatch(path)
    if m:
        check_repository_name(m["name"])
        # A manifest reference with a ':' is a digest, as parse_reference decides.
        digest_like = m["kind"] != "manifests" or ":" in m["rest"]
        raise RegistryError(Kind.DIGEST_INVALID if digest_like else Kind.TAG_INVALID,
                            f"invalid reference: {m['rest'][:200]!r}")
    raise RegistryError(Kind.NAME_INVALID, "invalid repository name or unknown endpoint")


def _page_size(request: Request, cap: int) -> int:
    raw = request.query_params.get("n")
    if raw is None:
        return cap
    if not raw.isdigit():
        raise RegistryError(Kind.INVALID_PARAMETER, f"invalid page size n={raw[:20]!r}")
    return min(int(raw), cap)


def _parse_content_range(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if m is None or int(m[2]) < int(m[1]):
        raise RegistryError(Kind.RANGE_INVALID, f"invalid Content-Range {value[:60]!r}")
    return int(m[1]), int(m[2])


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


_SEND_PIECE = 4 << 20


class FileSend(Response):
    """A blob body, in one of two ways, measured on 2 cores (docs/benchmarks.md, session 4):

    - sendfile(2) by the server (cargohold's own, plain HTTP: ASGI's `http.response.zerocopy`),
      no copy of the bytes in this process: 16 clients pulling one blob got 3.6-3.7 GB/s with a
      third of the CPU, against 1.9 GB/s copying. Used when other downloads are under way in
      this worker, i.e. when the CPU is what limits them.
    - 4 MiB pieces read on the event loop when the page cache has them, in a worker thread when
      the disk must be read: a lone download over loopback ran 2.3-2.7 GB/s this way and
      1.4-2.2 GB/s with sendfile, whose kernel path moves one page at a time. Also the way
      over TLS and under granian.

    Measured on granian 2.8 (docs/benchmarks.md): its ASGI pathsend reads 128 KiB at a time with a
    cross-thread wake-up per piece and pulled 1.1-1.6 GB/s; 4 MiB reads did 2-3 GB/s, and skipping
    the thread hop for cached pieces cut the CPU of a 16-client fan-out by a fifth.
    """

    active: ClassVar[int] = 0  # downloads under way in this worker process (on its event loop)

    def __init__(self, start: int, end: int, status: int, headers: dict[str, str],
                 opener: Callable[[int, int], BlobReader],
                 on_sent: Callable[[int], None] | None = None) -> None:
        super().__init__(None, status_code=status, headers=headers)
        self.start, self.end, self.opener = start, end, opener
        self.on_sent = on_sent  # told the body bytes handed to the server (metering)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        sent = 0
        reader = self.opener(self.start, self.end) if self.end > self.start else None
        FileSend.active += 1
        try:
            fd = reader.fileno() if reader is not None else None
            if fd is not None and FileSend.active > 1 and "http.response.zerocopy" in scope.get("extensions", {}):
                # The server sends the file with sendfile(2): no copy of the bytes in this process.
                await send({"type": "http.response.zerocopy", "file": fd, "offset": self.start,
                            "count": self.end - self.start, "more_body": False})
                sent = self.end - self.start
                return
            while reader is not None:
                piece = reader.read_cached(_SEND_PIECE)
                if piece is None:
                    piece = await to_thread.run_sync(reader.read, _SEND_PIECE)
                if not piece:
                    break
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                sent += len(piece)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            FileSend.active -= 1
            if reader is not None:
                reader.close()
            if self.on_sent is not None:
                self.on_sent(sent)


class OciApi:
    def __init__(self, identity: Identity, content: Content, uploads: Uploads, service: str,
                 max_page: int = MAX_PAGE, contexts: ContextFactory | None = None,
                 meter: Metering | None = None, inline_reads: bool = False) -> None:
        self.inline_reads = inline_reads
        self.contexts = contexts or ContextFactory()
        self.meter = meter
        self.identity = identity
        self.content = content
        self.uploads = uploads
        self.service = service
        self.max_page = max_page

    def challenge(self, request: Request) -> list[str]:
        # The token realm must be an absolute URL the client can reach: the one it used for us.
        host = request.headers.get("host") or self.service
        return challenges(f"{request.url.scheme}://{host}/token", self.service)

    # -- plumbing ---------------------------------------------------------------------------

    def _caller(self, request: Request) -> Caller:
        principal = self.identity.authenticate_header(request.headers.get("authorization"))
        caller = Caller(principal, self.contexts(request), registry_from_host(request.headers.get("host", "")))
        request.scope["cargohold.caller"] = caller  # for metering the bytes this request moves
        return caller

    def _metered(self, request: Request, name: str, direction: str) -> Callable[[int], None]:
        """A callback counting bytes moved for the authenticated caller of this request."""
        def count(nbytes: int) -> None:
            caller: Caller | None = request.scope.get("cargohold.caller")
            if self.meter is not None and caller is not None:
                self.meter.record(self.content.repos.registry_of(caller), name, caller.principal.arn,
                                  caller.context.source_ip, direction, nbytes)
        return count

    def _inline(self, request: Request) -> bool:
        # Reads on an embedded SQLite database take microseconds and never wait for writers (WAL):
        # running them on the event loop avoids a thread hop and the GIL hand-off it costs, which
        # dominated small requests. Writes (fsync) and a networked database go to worker threads.
        return self.inline_reads and request.method in ("GET", "HEAD")

    async def caller(self, request: Request) -> Caller:
        if self._inline(request):
            return self._caller(request)
        return await to_thread.run_sync(self._caller, request)

    async def call(self, request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Authenticate and run a synchronous use case: inline for quick reads, else in one thread hop."""
        def run() -> T:
            return fn(self._caller(request), *args, **kwargs)
        if self._inline(request):
            with self.content.meta.request_scope():  # the request's reads: one look at the database
                return run()
        return await to_thread.run_sync(run)

    async def handle(self, request: Request) -> Response:
        head = request.method == "HEAD"
        try:
            # The decoded path as received: request.url.path goes through urlsplit, which deletes
            # tab/CR/LF, so "a%09b" would silently become repository "ab".
            kind, params = match_route(request.scope["path"])
            if request.method not in _ALLOWED[kind]:
                return Response(json.dumps({"errors": [{"code": "UNSUPPORTED",
                                                        "message": "method not allowed"}]}),
                                status_code=405, media_type="application/json",
                                headers={"Allow": ", ".join(_ALLOWED[kind]), **API_HEADERS})
            handler: Callable[[Request, dict[str, str]], Awaitable[Response]] = getattr(self, f"on_{kind}")
            response = await handler(request, params)
            response.headers.update(API_HEADERS)
            return response
        except RegistryError as err:
            if err.kind is Kind.UNKNOWN:
                log.error("request failed: %s", err)
            return oci_error(err, head=head, challenge=self.challenge(request), request_id=uuid.uuid4().hex)
        except Exception:
            request_id = uuid.uuid4().hex  # minted only when needed: uuid4 was 3% of a small request
            log.exception("request %s failed", request_id)
            return oci_error(RegistryError(Kind.UNKNOWN, f"internal error (request id {request_id})"),
                             head=head, request_id=request_id)

    # -- base and listings ------------------------------------------------------------------

    async def on_base(self, request: Request, params: dict[str, str]) -> Response:
        await self.caller(request)
        return Response(b"{}", media_type="application/json")

    def _link(self, path: str, n: int, last: str) -> str:
        return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'

    async def on_catalog(self, request: Request, params: dict[str, str]) -> Response:
        n = _page_size(request, self.max_page)
        last = request.query_params.get("last")
        names = await self.call(request, self.content.catalog, last, n + 1 if n else 0)
        headers = {}
        if n and len(names) > n:
            names = names[:n]
            headers["Link"] = self._link("/v2/_catalog", n, names[-1])
        return Response(json.dumps({"repositories": names}), media_type="application/json",
                        headers=headers)

    async def on_tags(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        n = _page_size(request, self.max_page)
        last = request.query_params.get("last")
        tags = await self.call(request, self.content.tags, name, last, n + 1 if n else 0)
        headers = {}
        if n and len(tags) > n:
            tags = tags[:n]
            headers["Link"] = self._link(f"/v2/{name}/tags/list", n, tags[-1])
        return Response(json.dumps({"name": name, "tags": tags}), media_type="application/json",
                        headers=headers)

    async def on_referrers(self, request: Request, params: dict[str, str]) -> Response:
        artifact_type = request.query_params.get("artifactType")
        index = await self.call(request, self.content.referrers, params["name"], params["digest"],
                                artifact_type)
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type is not None else {}
        return Response(json.dumps(index), media_type=OCI_INDEX, headers=headers)

    # -- manifests --------------------------------------------------------------------------

    async def on_manifest(self, request: Request, params: dict[str, str]) -> Response:
        name, ref = params["name"], params["ref"]
        if request.method in ("GET", "HEAD"):
            head = request.method == "HEAD"
            row = await self.call(request, self.content.get_manifest, name, ref, head=head)
            headers = {"Docker-Content-Digest": row.digest, "ETag": f'"{row.digest}"',
                       "Content-Length": str(row.size)}
            if not head:
                self._metered(request, name, PULL)(row.size)
            return Response(b"" if head else row.content, media_type=row.media_type, headers=headers)
        if request.method == "PUT":
            caller = await self.caller(request)
            body = await read_limited(request, MAX_MANIFEST_BYTES)
            self._metered(request, name, PUSH)(len(body))
            result = await to_thread.run_sync(
                lambda: self.content.put_manifest(caller, name, ref, body,
                                                  request.headers.get("content-type")))
            headers = {"Location": f"/v2/{name}/manifests/{result.digest}",
                       "Docker-Content-Digest": result.digest}
            if result.subject:
                headers["OCI-Subject"] = result.subject
            return Response(b"", status_code=201, headers=headers)
        await self.call(request, self.content.delete_manifest, name, ref)
        return Response(b"", status_code=202)

    # -- blobs ------------------------------------------------------------------------------

    async def on_blob(self, request: Request, params: dict[str, str]) -> Response:
        name, digest = params["name"], params["digest"]
        if request.method == "DELETE":
            await self.call(request, self.content.delete_blob, name, digest)
            return Response(b"", status_code=202, headers={"Docker-Content-Digest": digest})
        head = request.method == "HEAD"
        info = await self.call(request, self.content.blob, name, digest, head=head)
        headers = {"Docker-Content-Digest": info.digest, "Accept-Ranges": "bytes",
                   "ETag": f'"{info.digest}"'}
        start, end, status = 0, info.size, 200
        range_header = request.headers.get("range")
        if range_header:
            m = _RANGE.fullmatch(range_header.strip())
            if m is None or (not m[1] and not m[2]):
                raise RegistryError(Kind.RANGE_INVALID, f"invalid Range {range_header[:60]!r}",
                                    headers={"Content-Range": f"bytes */{info.size}"})
            if m[1]:
                start = int(m[1])
                end = min(int(m[2]) + 1, info.size) if m[2] else info.size
            else:  # suffix range: the last N bytes
                start = max(info.size - int(m[2]), 0)
            if start >= info.size or end <= start:
                raise RegistryError(Kind.RANGE_INVALID, "requested range not satisfiable",
                                    headers={"Content-Range": f"bytes */{info.size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
        headers["Content-Length"] = str(end - start)
        headers["Content-Type"] = "application/octet-stream"
        if head:
            return Response(b"", status_code=status, headers=headers)
        return FileSend(start, end, status, headers, lambda a, b: self.content.blobs.open_blob(digest, a, b),
                        self._metered(request, name, PULL))

    # -- uploads ----------------------------------------------------------------------------

    def _upload_headers(self, name: str, upload_id: str, offset: int) -> dict[str, str]:
        return {"Location": f"/v2/{name}/blobs/uploads/{upload_id}", "Docker-Upload-UUID": upload_id,
                **range_headers(offset)}

    def _body(self, request: Request, name: str = "") -> AsyncIterator[bytes]:
        return request.stream() if self.meter is None else self._counted(request, name)

    async def _counted(self, request: Request, name: str) -> AsyncIterator[bytes]:
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                yield chunk
        finally:
            self._metered(request, name, PUSH)(received)

    async def on_uploads(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        query = request.query_params
        caller = await self.caller(request)
        mount, source = query.get("mount"), query.get("from")
        if mount is not None and source is not None:
            size = await to_thread.run_sync(self.uploads.mount, caller, name, mount, source)
            if size is not None:
                return Response(b"", status_code=201, headers={
                    "Location": f"/v2/{name}/blobs/{mount}", "Docker-Content-Digest": mount})
        digest = query.get("digest")
        if digest is not None:
            await self.uploads.monolithic(caller, name, digest, self._body(request, name))
            return Response(b"", status_code=201, headers={
                "Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})
        upload_id = await to_thread.run_sync(self.uploads.start, caller, name)
        return Response(b"", status_code=202, headers=self._upload_headers(name, upload_id, 0))

    async def on_upload(self, request: Request, params: dict[str, str]) -> Response:
        name, upload_id = params["name"], params["upload"]
        caller = await self.caller(request)
        if request.method == "GET":
            offset = await to_thread.run_sync(self.uploads.status, caller, name, upload_id)
            return Response(b"", status_code=204, headers=self._upload_headers(name, upload_id, offset))
        if request.method == "DELETE":
            await to_thread.run_sync(self.uploads.cancel, caller, name, upload_id)
            return Response(b"", status_code=204)
        content_range = _parse_content_range(request.headers.get("content-range"))
        if request.method == "PATCH":
            offset = await self.uploads.append(caller, name, upload_id, self._body(request, name), content_range)
            return Response(b"", status_code=202, headers=self._upload_headers(name, upload_id, offset))
        digest = request.query_params.get("digest")
        if digest is None:
            raise RegistryError(Kind.DIGEST_INVALID, "the digest query parameter is required")
        body = self._body(request, name) if _has_body(request) else None
        await self.uploads.complete(caller, name, upload_id, digest, body, content_range)
        return Response(b"", status_code=201, headers={
            "Location": f"/v2/{name}/blobs/{quote(digest)}", "Docker-Content-Digest": digest})

    # -- extras: layer download grants and the Bearer token endpoint --------------------------------

    async def download(self, request: Request, grant: str) -> Response:
        """GET /download/<grant>: a time-limited blob URL from GetDownloadUrlForLayer, no other auth."""
        try:
            info = await to_thread.run_sync(self.content.blob_by_grant, grant)
            headers = {"Docker-Content-Digest": info.digest, "Content-Length": str(info.size),
                       "Content-Type": "application/octet-stream"}
            return FileSend(0, info.size, 200, headers, lambda a, b: self.content.blobs.open_blob(info.digest, a, b),
                            self._grant_meter(request, grant))
        except RegistryError as err:
            return oci_error(err)

    def _grant_meter(self, request: Request, grant: str) -> Callable[[int], None] | None:
        """Metering for a download URL: the grant names the account, repository and (if recent) principal."""
        box = self.content.repos.box
        payload = box.verify(grant) if self.meter is not None and box is not None else None
        if payload is None:
            return None
        meter, source_ip = self.meter, self.contexts.source_ip(request)
        assert meter is not None
        return lambda nbytes: meter.record(str(payload.get("a")), str(payload.get("r")), str(payload.get("p", "")),
                                           source_ip, PULL, nbytes)

    async def token(self, request: Request) -> Response:
        """GET /token (Docker token auth): Basic credentials in, a Bearer token out."""
        try:
            principal = await to_thread.run_sync(
                self.identity.authenticate_header, request.headers.get("authorization"))
            token, expires = self.identity.issue_token(principal)
            now = int(self.identity.clock())
            return Response(json.dumps({"token": token, "access_token": token, "expires_in": expires - now}),
                            media_type="application/json")
        except RegistryError as err:
            return oci_error(err, challenge=self.challenge(request))
