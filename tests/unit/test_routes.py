"""match_route's string tests agree with the route regexes they replaced, on every path built from
the pieces that matter (route words, empty segments, "?" and "#", digests, "/v2" itself)."""

from __future__ import annotations

import itertools
import re

import pytest

from cargohold.errors import RegistryError
from cargohold.http.oci import match_route

_NAME = r"(?P<name>[^?#]+)"
REFERENCE_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"/v2/{_NAME}/manifests/(?P<ref>[^/]+)"), "manifest"),
    (re.compile(rf"/v2/{_NAME}/blobs/uploads/?"), "uploads"),
    (re.compile(rf"/v2/{_NAME}/blobs/uploads/(?P<upload>[^/]+)"), "upload"),
    (re.compile(rf"/v2/{_NAME}/blobs/(?P<digest>[^/]+)"), "blob"),
    (re.compile(rf"/v2/{_NAME}/tags/list"), "tags"),
    (re.compile(rf"/v2/{_NAME}/referrers/(?P<digest>[^/]+)"), "referrers"),
]
PIECES = ["v2", "a", "b-c", "manifests", "blobs", "uploads", "tags", "list", "referrers", "", "x?y", "#",
          "sha256:" + "ab" * 32, "_catalog", ".."]


def reference(path: str) -> tuple[str, dict[str, str]] | str:
    if path in ("/v2", "/v2/"):
        return "base", {}
    if path in ("/v2/_catalog", "/v2/_catalog/"):
        return "catalog", {}
    for pattern, kind in REFERENCE_ROUTES:
        m = pattern.fullmatch(path)
        if m:
            return kind, m.groupdict()
    return "error"


def outcome(path: str) -> tuple[str, dict[str, str]] | str:
    try:
        return match_route(path)
    except RegistryError:
        return "error"


def paths() -> list[str]:
    found = []
    for length in range(1, 5):
        for parts in itertools.product(PIECES, repeat=length):
            found.append("/v2/" + "/".join(parts))
    return [*found, "/v2", "/v2/", "/v3/a/blobs/x", "/", "/v2a/blobs/x"]


def test_string_routes_agree_with_the_regexes() -> None:
    checked = 0
    for path in paths():
        assert outcome(path) == reference(path), path
        checked += 1
    assert checked > 50_000


@pytest.mark.parametrize(("path", "expected"), [
    ("/v2/library/ubuntu/manifests/latest", ("manifest", {"name": "library/ubuntu", "ref": "latest"})),
    ("/v2/a/blobs/uploads/", ("uploads", {"name": "a"})),
    ("/v2/a/blobs/uploads/123", ("upload", {"name": "a", "upload": "123"})),
    ("/v2/a/b/blobs/sha256:00", ("blob", {"name": "a/b", "digest": "sha256:00"})),
    ("/v2/a/manifests/blobs/uploads", ("uploads", {"name": "a/manifests"})),
    ("/v2/a/tags/list", ("tags", {"name": "a"})),
    ("/v2/a/referrers/sha256:00", ("referrers", {"name": "a", "digest": "sha256:00"})),
])
def test_examples(path: str, expected: tuple[str, dict[str, str]]) -> None:
    assert match_route(path) == expected
