"""Console sessions: a cookie holding a signed login token, and CSRF tokens for every POST form.

The session cookie carries exactly what `docker login` gets: a token from Identity.issue_token
(or the ECR login token the person signed in with), checked by Identity.authenticate_token on
every request, so deactivating the access key ends the session too, and signing out revokes a
token the console issued (Identity.revoke_token; an ECR login token someone signed in with stays
valid, since docker may hold the same one). The cookie is HttpOnly,
SameSite=Strict, scoped to /console and Secure when the console is served over TLS.

CSRF: a form's token is the server's signature over a hash of the session token, so a page of
another site can neither read nor forge it. The sign-in form (no session yet) uses a random
double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cargohold.services.secrets import SecretBox

SESSION_COOKIE = "cargohold_console"
SIGNIN_COOKIE = "cargohold_console_signin"
COOKIE_PATH = "/console"
SESSION_TTL_SECONDS = 8 * 3600


class CsrfError(Exception):
    """A POST without a valid CSRF token (or from another origin)."""


def _fingerprint(session_token: str) -> str:
    return hashlib.sha256(session_token.encode()).hexdigest()[:32]


class Sessions:
    def __init__(self, box: SecretBox) -> None:
        self.box = box

    @staticmethod
    def token(request: Request) -> str | None:
        value = request.cookies.get(SESSION_COOKIE)
        return value if value and len(value) <= 4096 else None

    @staticmethod
    def _secure(request: Request) -> bool:
        return request.url.scheme == "https"

    def set(self, response: Response, request: Request, token: str, max_age: int) -> None:
        response.set_cookie(SESSION_COOKIE, token, max_age=max(0, max_age), path=COOKIE_PATH, httponly=True,
                            samesite="strict", secure=self._secure(request))
        response.delete_cookie(SIGNIN_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                               secure=self._secure(request))

    def clear(self, response: Response, request: Request) -> None:
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                               secure=self._secure(request))

    # -- CSRF -----------------------------------------------------------------------------------

    def csrf_for(self, session_token: str) -> str:
        return self.box.sign({"csrf": _fingerprint(session_token)})

    def check_csrf(self, request: Request, form: Any, session_token: str | None) -> None:
        """Raise CsrfError unless the form carries this session's token and came from our own origin."""
        self.check_origin(request)
        sent = form.get("csrf_token")
        if not isinstance(sent, str) or session_token is None:
            raise CsrfError("missing CSRF token")
        payload = self.box.verify(sent)
        if payload is None or not hmac.compare_digest(str(payload.get("csrf", "")), _fingerprint(session_token)):
            raise CsrfError("invalid CSRF token")

    @staticmethod
    def check_origin(request: Request) -> None:
        """When the browser says where a POST comes from, it must be this very host."""
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            return
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise CsrfError(f"cross-origin form post from {origin[:100]}")

    # -- the sign-in form -----------------------------------------------------------------------

    def signin_csrf(self, request: Request) -> tuple[str, bool]:
        """The sign-in form's double-submit token, and whether it is new (to be set as a cookie)."""
        current = request.cookies.get(SIGNIN_COOKIE)
        if current and 16 <= len(current) <= 128:
            return current, False
        return secrets.token_urlsafe(24), True

    def set_signin_cookie(self, response: Response, request: Request, value: str) -> None:
        response.set_cookie(SIGNIN_COOKIE, value, max_age=3600, path=COOKIE_PATH, httponly=True,
                            samesite="strict", secure=self._secure(request))

    def check_signin_csrf(self, request: Request, form: Any) -> None:
        self.check_origin(request)
        cookie = request.cookies.get(SIGNIN_COOKIE)
        sent = form.get("csrf_token")
        if not cookie or not isinstance(sent, str) or not hmac.compare_digest(cookie.encode(), sent.encode()):
            raise CsrfError("the sign-in form expired")
