"""The /console face: dispatch, sessions, rendering and error pages around the page handlers.

Every page goes through the same services as the APIs with a Caller built from the session, so
the policy engine decides what a person sees and may do; a denial is shown with its message.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from anyio import to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cargohold.errors import Kind, RegistryError
from cargohold.http.bodies import read_limited
from cargohold.http.console.session import SESSION_TTL_SECONDS, CsrfError, Sessions
from cargohold.http.console.views import human_bytes, image_kind, iso_time, short_digest, show_time
from cargohold.http.context import ContextFactory
from cargohold.services.identity import CONSOLE_PURPOSE, TOKEN_USER, Identity, Principal
from cargohold.services.repositories import Caller

log = logging.getLogger("cargohold.console")
T = TypeVar("T")

PREFIX = "/console"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 256 * 1024  # a policy document is at most a few tens of KiB
HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_FILES = {p.name for p in STATIC_DIR.iterdir() if p.is_file()} if STATIC_DIR.is_dir() else set()
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
REPO_PATH = re.compile(r"/repositories/(?P<name>[a-z0-9][a-z0-9._/-]*?)/?(?:/-/(?P<rest>[^?#]+?))?/?")
STATUS_TITLES = {400: "That did not work", 403: "Access denied", 404: "Not found", 409: "Conflict",
                 413: "Too large", 500: "Something went wrong"}


class NotSignedIn(Exception):
    pass


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Session:
    principal: Principal
    token: str
    caller: Caller
    csrf: str


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await to_thread.run_sync(lambda: fn(*args, **kwargs))


def status_of(err: RegistryError) -> int:
    if err.kind is Kind.DENIED:
        return 403
    status = err.row.oci_status
    return status if 400 <= status < 600 else 400


def safe_next(value: str | None) -> str:
    """Only a path inside the console: never another site (no open redirect)."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{PREFIX}/repositories"


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(bytes=human_bytes, time=show_time, isotime=iso_time, short=short_digest,
                       urlpath=lambda s: quote(str(s), safe="/:@"))
    env.globals.update(prefix=PREFIX, image_kind=image_kind)
    return env


class ConsoleBase:
    """Sessions, rendering and error handling; the page handlers live in pages.Console."""

    def __init__(self, identity: Identity, sessions: Sessions, contexts: ContextFactory) -> None:
        self.identity = identity
        self.sessions = sessions
        self.contexts = contexts
        self.templates = make_templates()

    # -- rendering ------------------------------------------------------------------------------

    def render(self, request: Request, template: str, status: int = 200, session: Session | None = None,
               **context: Any) -> HTMLResponse:
        context.setdefault("nav", "")
        context.setdefault("notice", None)
        context.setdefault("error", None)
        html = self.templates.get_template(template).render(
            request=request, session=session, user=session.principal if session else None,
            csrf=session.csrf if session else context.pop("csrf", ""), **context)
        return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

    def redirect(self, path: str, fragment: str = "", **params: str) -> RedirectResponse:
        query = f"?{urlencode(params)}" if params else ""
        return RedirectResponse(path + query + (f"#{fragment}" if fragment else ""), status_code=303,
                                headers=SECURITY_HEADERS)

    def error_page(self, request: Request, status: int, message: str, session: Session | None,
                   request_id: str = "") -> HTMLResponse:
        back = request.headers.get("referer") or ""
        host = request.headers.get("host", "")
        back = back if back.split("://", 1)[-1].startswith(f"{host}{PREFIX}/") else f"{PREFIX}/repositories"
        return self.render(request, "error.html", status=status, session=session,
                           title=STATUS_TITLES.get(status, "That did not work"), message=message, code=status,
                           request_id=request_id, back=back)

    # -- sessions -------------------------------------------------------------------------------

    def _session(self, request: Request) -> Session:
        token = self.sessions.token(request)
        if token is None:
            raise NotSignedIn
        try:
            principal = self.identity.authenticate_token(token)
        except RegistryError as err:
            raise NotSignedIn from err
        caller = Caller(principal, self.contexts(request), principal.account_id)
        return Session(principal, token, caller, self.sessions.csrf_for(token))

    async def session(self, request: Request) -> Session:
        return await run(self._session, request)

    async def form(self, request: Request, session_token: str | None) -> dict[str, str]:
        """The posted form, once its CSRF token checks out (the session's, or the sign-in form's)."""
        if request.headers.get("content-type", "").split(";")[0].strip() != FORM_TYPE:
            raise HttpError(415, "The console accepts only its own forms.")
        body = await read_limited(request, MAX_FORM_BYTES)
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=50, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "The form could not be read.") from None
        data = dict(pairs)
        if session_token is None:
            self.sessions.check_signin_csrf(request, data)
        else:
            self.sessions.check_csrf(request, data, session_token)
        return data

    # -- sign in and out ------------------------------------------------------------------------

    async def signin(self, request: Request) -> Response:
        csrf, new = self.sessions.signin_csrf(request)
        next_path = safe_next(request.query_params.get("next"))
        if request.method == "GET":
            response = self.render(request, "signin.html", csrf=csrf, next=next_path, key_id="",
                                   notice=notice_for(request))
            if new:
                self.sessions.set_signin_cookie(response, request, csrf)
            return response
        form = await self.form(request, None)
        next_path = safe_next(form.get("next"))
        key_id = form.get("access_key_id", "").strip()
        secret = form.get("secret", "").strip()
        try:
            principal, token, ttl = await run(self._authenticate, key_id, secret)
        except RegistryError:
            response = self.render(request, "signin.html", status=401, csrf=csrf, next=next_path, key_id=key_id,
                                   error="Sign-in failed: the access key ID or the secret (or login token) "
                                         "is not valid.")
            if new:
                self.sessions.set_signin_cookie(response, request, csrf)
            return response
        log.info("console sign-in: %s", principal.arn)
        redirect = self.redirect(next_path)
        self.sessions.set(redirect, request, token, ttl)
        return redirect

    def _authenticate(self, key_id: str, secret: str) -> tuple[Principal, str, int]:
        """An access key and its secret, or an ECR login token (user AWS): (principal, session token, ttl)."""
        if not key_id or not secret or len(key_id) > 128 or len(secret) > 8192:
            raise RegistryError(Kind.UNAUTHORIZED, "invalid username or password")
        if key_id == TOKEN_USER:
            token = login_password(secret)
            principal = self.identity.authenticate_token(token)
            payload = self.sessions.box.verify(token) or {}
            expires = payload.get("e")
            ttl = int(expires - self.identity.clock()) if isinstance(expires, int) else SESSION_TTL_SECONDS
            return principal, token, min(ttl, SESSION_TTL_SECONDS)
        principal = self.identity.authenticate_basic(key_id, secret)
        token, _ = self.identity.issue_token(principal, SESSION_TTL_SECONDS, purpose=CONSOLE_PURPOSE)
        return principal, token, SESSION_TTL_SECONDS

    async def signout(self, request: Request) -> Response:
        token = self.sessions.token(request)
        if token is not None:
            await self.form(request, token)
            await run(self.identity.revoke_token, token)  # the cookie's token stops working everywhere
        response = self.redirect(f"{PREFIX}/signin", notice="signed-out")
        self.sessions.clear(response, request)
        return response

    # -- static assets --------------------------------------------------------------------------

    def static(self, name: str) -> Response:
        if name not in STATIC_FILES:
            raise HttpError(404, "There is no such file.")
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Response((STATIC_DIR / name).read_bytes(), media_type=media_type,
                        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})

    # -- dispatch -------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        path = request.scope["path"][len(PREFIX):]
        session: Session | None = None
        request_id = uuid.uuid4().hex
        try:
            if path in ("", "/"):
                return self.redirect(f"{PREFIX}/repositories")
            if path.startswith("/static/"):
                return self.static(path[len("/static/"):])
            if path == "/signin":
                self._methods(request, "GET", "POST")
                return await self.signin(request)
            if path == "/signout":
                self._methods(request, "POST")
                return await self.signout(request)
            session = await self.session(request)
            return await self.route(request, path, session)
        except NotSignedIn:
            if request.method != "GET":
                return self.redirect(f"{PREFIX}/signin", notice="expired")
            target = request.scope["path"] + (f"?{request.url.query}" if request.url.query else "")
            return self.redirect(f"{PREFIX}/signin", next=target)
        except CsrfError as err:
            log.warning("console: refused a form post: %s", err)
            return self.error_page(request, 403, "This form has expired or did not come from this console. "
                                   "Go back, reload the page and try again.", session)
        except HttpError as err:
            return self.error_page(request, err.status, err.message, session)
        except RegistryError as err:
            if err.kind is Kind.UNAUTHORIZED:
                return self.redirect(f"{PREFIX}/signin", notice="expired")
            return self.error_page(request, status_of(err), err.message, session)
        except Exception:
            log.exception("console request %s failed", request_id)
            return self.error_page(request, 500, "The console could not show this page. The error has been "
                                   "logged.", session, request_id)

    @staticmethod
    def _methods(request: Request, *allowed: str) -> None:
        if request.method not in allowed:
            raise HttpError(405, f"This page does not accept {request.method} requests.")

    async def route(self, request: Request, path: str, session: Session) -> Response:
        handler = self.page_for(path)
        if handler is None:
            raise HttpError(404, "There is no such page in the console.")
        fn, args = handler
        return await fn(request, session, *args)

    def page_for(self, path: str) -> tuple[Callable[..., Awaitable[Response]], tuple[str, ...]] | None:
        raise NotImplementedError


NOTICES = {
    "signed-out": "You have signed out.",
    "expired": "Your session has ended. Sign in again.",
    "created": "The repository was created.",
    "deleted": "The repository was deleted.",
    "policy-saved": "The repository policy was saved.",
    "policy-deleted": "The repository policy was deleted.",
    "lifecycle-saved": "The lifecycle policy was saved.",
    "lifecycle-deleted": "The lifecycle policy was deleted.",
    "preview": "The lifecycle policy preview has run.",
    "preview-running": "The lifecycle policy preview is still running.",
    "mutability-saved": "Tag immutability was saved.",
    "scanning-saved": "Image scanning settings were saved.",
    "scan-started": "The scan has started: this page shows its findings when it completes.",
}


def notice_for(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


def login_password(secret: str) -> str:
    """The token itself, or `aws ecr get-authorization-token`'s base64 of "AWS:<token>"."""
    import base64
    import binascii

    if "." not in secret:
        try:
            user, sep, token = base64.b64decode(secret, validate=True).decode().partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return secret
        if sep and user == TOKEN_USER:
            return token
    return secret
