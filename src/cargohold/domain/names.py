"""Repository names, tags and references, validated before they are used anywhere."""

from __future__ import annotations

import re

from cargohold.domain.digests import is_digest, parse_digest
from cargohold.errors import Kind, RegistryError

# OCI distribution-spec name grammar; ECR additionally bounds the length to 2..256.
_NAME_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
_TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
NAME_MIN, NAME_MAX = 2, 256


def is_repository_name(name: str) -> bool:
    return NAME_MIN <= len(name) <= NAME_MAX and _NAME_RE.fullmatch(name) is not None


def check_repository_name(name: str) -> str:
    if not is_repository_name(name):
        raise RegistryError(Kind.NAME_INVALID, f"invalid repository name: {name[:300]!r}")
    return name


def is_tag(tag: str) -> bool:
    return _TAG_RE.fullmatch(tag) is not None


def check_tag(tag: str) -> str:
    if not is_tag(tag):
        raise RegistryError(Kind.TAG_INVALID, f"invalid tag: {tag[:200]!r}")
    return tag


def parse_reference(reference: str) -> tuple[str | None, str | None]:
    """A manifest reference is a tag or a digest: returns (tag, None) or (None, digest)."""
    if ":" in reference:
        return None, parse_digest(reference)
    if is_tag(reference):
        return reference, None
    raise RegistryError(Kind.TAG_INVALID, f"invalid tag: {reference[:200]!r}")


__all__ = ["check_repository_name", "check_tag", "is_digest", "is_repository_name", "is_tag",
           "parse_reference"]
