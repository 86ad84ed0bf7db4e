"""An HTTP client that sends what the official suite's client sends.

The Go suite talks through reggie (on resty and net/http). What that means on the wire, and what
this client therefore does:

- paths are "/v2/<name>/..." with the namespace, reference and digest put in; the literal
  placeholder "<ref>" that one helper of the suite uses is not a reggie placeholder and goes out
  as "%3Cref%3E", as Go escapes it;
- query parameters are appended to a query the URL may already have (an upload Location);
- a Location is followed as its path and query only, against OCI_ROOT_URL (GetRelativeLocation);
- a body is streamed (Transfer-Encoding: chunked): resty hands net/http an io.Reader of unknown
  length; a Content-Length header set by the suite is dropped by net/http, the length comes from
  the body; an empty POST/PUT/PATCH says Content-Length: 0; GET and HEAD never carry a body;
- no Accept or Accept-Encoding unless the suite sets one; User-Agent
  "distribution-spec-conformance-tests"; redirects followed (up to 20); TLS not verified;
- on a 401 with WWW-Authenticate: Basic -> the request again with the credentials; Bearer ->
  GET realm?service=..&scope=.. (OCI_AUTH_SCOPE overrides the scope) with the credentials as
  Basic, the "token" (or "access_token") of the answer as Bearer on the request again.

One difference: reggie starts every request without credentials and answers the challenge each
time; this client remembers the last Authorization that worked and sends it first, going through
the challenge again only when it is refused. The requests the registry finally answers are the same.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import httpx

from tests.conformance.config import Config

USER_AGENT = "distribution-spec-conformance-tests"
_SCHEME = re.compile(r"(?i).*(bearer|basic).*")
_PARAMS = re.compile(r'([a-zA-z]+)="(.+?)"')
_BODY_METHODS = ("POST", "PUT", "PATCH")


@dataclass
class ErrorInfo:
    code: str
    message: str


class Response:
    """An answer, with the helpers reggie's Response has."""

    def __init__(self, raw: httpx.Response) -> None:
        self.raw = raw

    @property
    def status_code(self) -> int:
        return self.raw.status_code

    def header(self, name: str) -> str:
        """Header().Get(name): the first value, or ""."""
        values = self.raw.headers.get_list(name)
        return values[0] if values else ""

    @property
    def body(self) -> bytes:
        return self.raw.content

    def relative_location(self) -> str:
        """GetRelativeLocation: the (decoded) path of Location, plus its query."""
        location = self.header("Location")
        try:
            parts = urlsplit(location)
        except ValueError:
            return ""
        path = unquote(parts.path)
        return f"{path}?{parts.query}" if parts.query else path

    def absolute_location(self) -> str:
        """GetAbsoluteLocation: Location as sent, or "" if it does not parse."""
        location = self.header("Location")
        try:
            urlsplit(location)
        except ValueError:
            return ""
        return location

    def errors(self) -> list[ErrorInfo]:
        """Errors(): the body as an OCI error list; raises if it is not one."""
        doc = json.loads(self.body)
        if not isinstance(doc, dict) or not isinstance(doc.get("errors"), list) or not doc["errors"]:
            raise ValueError(f"body was valid json but could not be parsed: {self.body[:200]!r}")
        return [ErrorInfo(str(e.get("code", "")), str(e.get("message", ""))) for e in doc["errors"]
                if isinstance(e, dict)]

    def describe(self) -> str:
        text = self.body[:300].decode(errors="replace")
        return f"{self.raw.request.method} {self.raw.request.url} -> {self.status_code} {text!r}"


class RegistryClient:
    def __init__(self, config: Config, timeout: float = 60.0) -> None:
        self.config = config
        self.base = config.root_url.rstrip("/")
        self.namespace = config.namespace
        self.http = httpx.Client(verify=False, timeout=timeout, follow_redirects=True, max_redirects=20)
        for name in ("accept", "accept-encoding"):
            del self.http.headers[name]
        self.http.headers["user-agent"] = USER_AGENT
        self.authorization: str | None = None
        self.requests = 0

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        url = f"{self.base}/{path.lstrip('/')}"
        if params:
            query = urlencode(sorted(params.items()))
            url += ("&" if "?" in url else "?") + query
        return url

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                headers: Mapping[str, str] | None = None, body: bytes | None = None) -> Response:
        url = self.url(path, params)
        sent_headers = {k: v for k, v in (headers or {}).items() if k.lower() != "content-length"}
        if method in ("GET", "HEAD"):
            body = None
        resp = self._send(method, url, sent_headers, body, self.authorization)
        if resp.status_code == 401:
            resp = self._answer_challenge(method, url, sent_headers, body, resp)
        return Response(resp)

    def _send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
              authorization: str | None) -> httpx.Response:
        h = dict(headers)
        if authorization:
            h["Authorization"] = authorization
        content: Iterator[bytes] | bytes | None = None
        if body:
            content = _stream(body)
        elif method in _BODY_METHODS:
            content = b""
        self.requests += 1
        resp = self.http.request(method, url, headers=h, content=content)
        if self.config.debug:
            print(f"  {method} {resp.request.url} -> {resp.status_code}", file=sys.stderr)
        return resp

    def _answer_challenge(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                          resp: httpx.Response) -> httpx.Response:
        values = resp.headers.get_list("www-authenticate")
        if not values:
            return resp
        challenge = values[0]
        scheme = _SCHEME.sub(r"\1", challenge).lower()
        if scheme == "bearer":
            authorization = "Bearer " + self._token(challenge)
        elif scheme == "basic":
            authorization = self._basic()
        else:
            raise RuntimeError(f"something went wrong with authorization: {challenge!r}")
        retried = self._send(method, url, headers, body, authorization)
        if retried.status_code != 401:
            self.authorization = authorization
        return retried

    def _basic(self) -> str:
        pair = f"{self.config.username}:{self.config.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def _token(self, challenge: str) -> str:
        fields = {k.lower(): v for k, v in _PARAMS.findall(challenge)}
        params = {"service": fields.get("service", "")}
        scope = self.config.auth_scope or fields.get("scope", "")
        if scope:
            params["scope"] = scope
        self.requests += 1
        answer = self.http.get(fields.get("realm", ""), params=params,
                               headers={"Accept": "application/json", "Authorization": self._basic()})
        info: Any = answer.json()
        token = str(info.get("token") or info.get("access_token") or "")
        return token


def _stream(body: bytes) -> Iterator[bytes]:
    """A body of unknown length for httpx, so it goes out chunked as the Go client's does."""
    yield body
