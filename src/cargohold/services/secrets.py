"""Secrets at rest and signed tokens.

One master key (Fernet, 32 bytes) per installation: generated into the data directory with mode
0600 unless configured (several nodes must share it). Access key secrets are stored encrypted
with it, because SigV4 needs the plain secret to verify a signature; login tokens are signed
with an HMAC key derived from it, so verifying one costs one HMAC, not a password hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import string
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

KEY_FILE = "master.key"


def load_or_create_master_key(data_dir: Path, configured: str = "") -> bytes:
    if configured:
        return configured.encode()
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return key


_PLAIN_CACHE = 4096


class SecretBox:
    def __init__(self, master_key: bytes) -> None:
        self._fernet = Fernet(master_key)
        # Every authenticated request needs its key's secret; Fernet (AES + HMAC) costs ~40 us, a
        # quarter of a blob HEAD. The plaintext is in this process's memory either way.
        self._plain: dict[bytes, str] = {}
        self._token_key = hmac.new(base64.urlsafe_b64decode(master_key), b"cargohold token v1",
                                   hashlib.sha256).digest()

    def encrypt(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def decrypt(self, blob: bytes) -> str:
        blob = bytes(blob)
        plain = self._plain.get(blob)
        if plain is not None:
            return plain
        try:
            plain = self._fernet.decrypt(blob).decode()
        except InvalidToken:
            raise ValueError("secret cannot be decrypted with this master key") from None
        if len(self._plain) >= _PLAIN_CACHE:
            self._plain.clear()
        self._plain[blob] = plain
        return plain

    # -- signed tokens: base64url(json payload) "." base64url(hmac-sha256) -----------------------

    def sign(self, payload: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).rstrip(b"=")
        mac = base64.urlsafe_b64encode(hmac.new(self._token_key, body, hashlib.sha256).digest()).rstrip(b"=")
        return (body + b"." + mac).decode()

    def verify(self, token: str) -> dict[str, Any] | None:
        """The payload of an authentic token, or None. Expiry is the caller's business."""
        if len(token) > 8192 or token.count(".") != 1:
            return None
        body, mac = token.encode().split(b".")
        expected = base64.urlsafe_b64encode(hmac.new(self._token_key, body, hashlib.sha256).digest()).rstrip(b"=")
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None


def new_access_key_id() -> str:
    # AWS shape: "AKIA" + 16 upper-case letters/digits.
    alphabet = string.ascii_uppercase + "234567"
    return "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))


def new_secret_access_key() -> str:
    alphabet = string.ascii_letters + string.digits + "+/"
    return "".join(secrets.choice(alphabet) for _ in range(40))
