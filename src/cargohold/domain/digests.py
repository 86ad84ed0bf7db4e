"""Content digests. A digest is validated here before it can become a path or a key."""

from __future__ import annotations

import hashlib
import re

from cargohold.errors import Kind, RegistryError

# Only sha256 and sha512 are supported; lower-case hex of the exact length is required.
_DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")
_ALGORITHMS = {"sha256": 64, "sha512": 128}


def is_digest(value: str) -> bool:
    return _DIGEST_RE.fullmatch(value) is not None


def parse_digest(value: str) -> str:
    if _DIGEST_RE.fullmatch(value) is None:
        algorithm = value.split(":", 1)[0]
        if ":" in value and re.fullmatch(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*", algorithm) \
                and algorithm not in _ALGORITHMS:
            raise RegistryError(Kind.DIGEST_INVALID, f"unsupported digest algorithm: {algorithm[:40]!r}")
        raise RegistryError(Kind.DIGEST_INVALID, f"invalid digest: {value[:200]!r}")
    return value


def algorithm_of(digest: str) -> str:
    return digest.split(":", 1)[0]


def new_hasher(digest_or_algorithm: str = "sha256") -> hashlib._Hash:
    return hashlib.new(digest_or_algorithm.split(":", 1)[0])


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
