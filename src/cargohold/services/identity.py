"""Who is calling, and may they do this: principals, credentials and the authorization hook.

Authentication yields a Principal. Authorization goes through one Authorizer, asked with an
ECR action name and a resource ARN for every request on either face. The policy engine of a
later stage plugs in here; until then the account's own principals may do everything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cargohold.errors import Kind, RegistryError
from cargohold.services.secrets import SecretBox, new_access_key_id, new_secret_access_key
from cargohold.storage.meta.store import MetadataStore

TOKEN_USER = "AWS"
TOKEN_TTL_SECONDS = 12 * 3600
CREDENTIALS_FILE = "root-credentials"


@dataclass(frozen=True)
class Principal:
    arn: str
    account_id: str
    kind: str  # root | user
    name: str
    user_id: str
    access_key_id: str


@dataclass(frozen=True)
class RequestContext:
    source_ip: str = ""
    secure_transport: bool = False
    endpoint_id: str = ""  # the private endpoint (aws:SourceVpce) the request came through
    request_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResourceFacts:
    """What authorization needs to know about a resource beyond its ARN."""

    policy: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    account_id: str | None = None


class Authorizer(Protocol):
    def authorize(self, principal: Principal, action: str, resource: str, context: RequestContext,
                  facts: ResourceFacts | None = None) -> None:
        """Return if allowed; raise RegistryError(DENIED) otherwise."""


def denied_message(principal: Principal, action: str, resource: str) -> str:
    return (f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource}")


def root_arn(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:root"


CONSOLE_PURPOSE = "console"
REVOKED_PREFIX = "revoked-token:"


def _revoked_key(token: str) -> str:
    return REVOKED_PREFIX + hashlib.sha256(token.encode()).hexdigest()


class Identity:
    def __init__(self, meta: MetadataStore, box: SecretBox, account_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.meta = meta
        self.box = box
        self.account_id = account_id
        self.clock = clock

    # -- bootstrap --------------------------------------------------------------------------

    def ensure_root_credentials(self, data_dir: Path, key_id: str | None, secret: str | None,
                                account_id: str | None = None) -> tuple[str, str] | None:
        """Seed an account's root access key once. Returns (id, secret) when one was created now.

        The home account's key is also saved (mode 0600) in the data directory; another account's
        in root-credentials-<account>.
        """
        account = account_id or self.account_id
        arn = root_arn(account)
        now = int(self.clock() * 1000)
        self.meta.ensure_principal(arn, account, "root", "root", account, now)
        if self.meta.count_access_keys(arn) > 0:
            return None
        key_id = key_id or new_access_key_id()
        secret = secret or new_secret_access_key()
        self.meta.add_access_key(key_id, arn, self.box.encrypt(secret), now)
        name = CREDENTIALS_FILE if account == self.account_id else f"{CREDENTIALS_FILE}-{account}"
        path = data_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"aws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n")
        os.chmod(path, 0o600)
        return key_id, secret

    # -- authentication ---------------------------------------------------------------------

    def principal_for_key(self, key_id: str) -> tuple[Principal, str] | None:
        """The principal owning an active access key, with the key's secret."""
        if not (0 < len(key_id) <= 128):
            return None
        key = self.meta.get_access_key(key_id)
        if key is None or key.status != "Active":
            return None
        principal = Principal(key.principal_arn, key.account_id, key.principal_kind,
                              key.principal_name, key.user_id, key.key_id)
        return principal, self.box.decrypt(key.secret_enc)

    def authenticate_basic(self, username: str, password: str) -> Principal:
        if username == TOKEN_USER:
            return self.authenticate_token(password)
        found = self.principal_for_key(username)
        if found is None or not hmac.compare_digest(found[1].encode(), password.encode()):
            raise RegistryError(Kind.UNAUTHORIZED, "invalid username or password")
        return found[0]

    def issue_token(self, principal: Principal, ttl: int = TOKEN_TTL_SECONDS,
                    purpose: str | None = None) -> tuple[str, int]:
        """A login password bound to the principal and its access key; returns (token, expires).
        purpose="console": a console session's, which signing out ends for good (revoke_token)."""
        expires = int(self.clock()) + ttl
        nonce = "".join(secrets.choice(string.ascii_letters) for _ in range(8))
        payload: dict[str, object] = {"k": principal.access_key_id, "e": expires, "n": nonce}
        if purpose is not None:
            payload["p"] = purpose
        return self.box.sign(payload), expires

    def revoke_token(self, token: str) -> bool:
        """End a console session's token before it expires. Other tokens (ECR login passwords) are
        left alone: docker may be using the same one. Expired revocations are purged here too."""
        payload = self.box.verify(token)
        if payload is None or payload.get("p") != CONSOLE_PURPOSE or not isinstance(payload.get("e"), int):
            return False
        self.meta.put_setting(_revoked_key(token), str(payload["e"]))
        self.meta.purge_settings(REVOKED_PREFIX, int(self.clock()))
        return True

    def authenticate_token(self, token: str) -> Principal:
        payload = self.box.verify(token)
        if payload is None:
            raise RegistryError(Kind.UNAUTHORIZED, "invalid authorization token")
        expires = payload.get("e")
        if not isinstance(expires, int) or expires < self.clock():
            raise RegistryError(Kind.UNAUTHORIZED, "authorization token has expired")
        if payload.get("p") == CONSOLE_PURPOSE and self.meta.get_setting(_revoked_key(token)) is not None:
            raise RegistryError(Kind.UNAUTHORIZED, "this session was signed out")
        key_id = payload.get("k")
        # The key is looked up again: deactivating it revokes its tokens on the next request.
        found = self.principal_for_key(key_id) if isinstance(key_id, str) else None
        if found is None:
            raise RegistryError(Kind.UNAUTHORIZED, "authorization token is no longer valid")
        return found[0]

    def authenticate_header(self, authorization: str | None) -> Principal:
        if not authorization:
            # Not the code's stock text on purpose: Docker reduces an error whose message is exactly
            # "authentication required" (and has no detail) to a bare code it then retries for ~50 s
            # (anonymous push after no `docker login`), instead of failing at once.
            raise RegistryError(Kind.UNAUTHORIZED, "authentication required: no credentials were sent")
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                raise RegistryError(Kind.UNAUTHORIZED, "malformed Basic credentials") from None
            username, sep, password = decoded.partition(":")
            if not sep:
                raise RegistryError(Kind.UNAUTHORIZED, "malformed Basic credentials")
            return self.authenticate_basic(username, password)
        if scheme == "bearer":
            return self.authenticate_token(value)
        raise RegistryError(Kind.UNAUTHORIZED, "unsupported authorization scheme")
