"""Hostile and malformed input: names, digests, tags, upload ids, methods. Nothing may escape.

Paths go out raw (http.client) where httpx would normalise '..' or '//' before sending.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.helpers import (
    OCI_MANIFEST,
    Pushed,
    assert_oci_error,
    assert_raw_oci_error,
    digest,
    image_manifest,
    push_blob,
    push_image,
    raw_request,
    snapshot_tree,
    start_upload,
    unique_repo,
)
from tests.support.server import ServerProcess

# As they appear in the request path (percent-escapes are decoded by the server).
HOSTILE_NAMES = [
    "../x", "..", "%2e%2e", "%2e%2e/x", "a%2F..%2F..%2Fb", "a/../b", "x/..", "a//b", "/abs", "a/",
    "UPPER", "Mixed/case", "a", "a" * 257, ".hidden", "-lead", "trail-", "a..b", "a__", "a%00b",
    "a%20b", "caf%C3%A9", "a%09b", "a%0Ab", "a%0Db", "ab%09", "a%3Fb", "a%23b",
]
VALID_DIGEST = digest(b"some content")
BAD_DIGESTS = [
    "sha256:" + "A" * 64,  # upper-case hex
    "SHA256:" + "a" * 64,  # upper-case algorithm
    "sha256:abc",  # too short
    "sha256:" + "a" * 65,  # too long
    "sha256:" + "g" * 64,  # not hex
    "sha512:" + "a" * 64,  # wrong length for the algorithm
    "sha256:",
    ":" + "a" * 64,
    "md5:" + "a" * 32,  # unknown algorithms
    "sha1:" + "a" * 40,
    "blake3:" + "a" * 64,
    "sha256:..",
    "sha256:../..",
    "sha256:a%2F..%2F..",
]

_MUTABLE = ("meta.db", "meta.db-wal", "meta.db-shm", "server.log")


@pytest.fixture()
def untouched(server: ServerProcess, client: httpx.Client) -> Iterator[None]:
    """Asserts afterwards that no file anywhere near the data directory appeared or changed
    (the database and the log aside) and that no repository was created."""
    root = server.data_dir.parent

    def files() -> dict[str, tuple[int, int]]:
        return {k: v for k, v in snapshot_tree(root).items() if Path(k).name not in _MUTABLE}

    before_files = files()
    before_repos = client.get("/v2/_catalog").json()["repositories"]
    yield
    assert files() == before_files
    assert client.get("/v2/_catalog").json()["repositories"] == before_repos


@pytest.fixture(scope="module")
def repo(module_client: httpx.Client) -> str:
    name = unique_repo("bad")
    push_blob(module_client, name, b"seed")
    return name


@pytest.fixture(scope="module")
def image(module_client: httpx.Client, repo: str) -> Pushed:
    """An untagged image in `repo`; tests must leave the repository without tags."""
    return push_image(module_client, repo, None)


# -- repository names -----------------------------------------------------------------------

@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_name_invalid(server: ServerProcess, client: httpx.Client, untouched: None,
                                        name: str) -> None:
    manifest = image_manifest(b"{}", [])
    requests: list[tuple[str, str, bytes | None, dict[str, str]]] = [
        ("GET", f"/v2/{name}/tags/list", None, {}),
        ("POST", f"/v2/{name}/blobs/uploads/", None, {"Content-Length": "0"}),
        ("POST", f"/v2/{name}/blobs/uploads/?digest={digest(b'x')}", b"x", {}),
        ("POST", f"/v2/{name}/blobs/uploads/?mount={VALID_DIGEST}&from=elsewhere", b"", {}),
        ("PUT", f"/v2/{name}/manifests/latest", manifest, {"Content-Type": OCI_MANIFEST}),
        ("GET", f"/v2/{name}/manifests/latest", None, {}),
        ("DELETE", f"/v2/{name}/manifests/latest", None, {}),
        ("GET", f"/v2/{name}/blobs/{VALID_DIGEST}", None, {}),
        ("DELETE", f"/v2/{name}/blobs/{VALID_DIGEST}", None, {}),
        ("GET", f"/v2/{name}/referrers/{VALID_DIGEST}", None, {}),
        ("GET", f"/v2/{name}/blobs/uploads/{uuid.uuid4()}", None, {}),
        ("PATCH", f"/v2/{name}/blobs/uploads/{uuid.uuid4()}", b"data", {}),
    ]
    for method, path, body, headers in requests:
        resp = raw_request(server, method, path, body, headers)
        assert resp.status == 400, (method, path, resp.status, resp.body)
        assert_raw_oci_error(resp, 400, "NAME_INVALID")
    head = raw_request(server, "HEAD", f"/v2/{name}/manifests/latest")
    assert head.status == 400
    assert head.body == b""


@pytest.mark.parametrize("name", ["ab", "a" * 256, "a0/b-1/c__d/e.f", "x--y"])
def test_names_at_the_edges_are_valid(client: httpx.Client, name: str) -> None:
    """Valid but unknown names are NAME_UNKNOWN, not NAME_INVALID."""
    assert_oci_error(client.get(f"/v2/{name}/tags/list"), 404, "NAME_UNKNOWN")


def test_longest_name_can_be_pushed(client: httpx.Client) -> None:
    name = "b" * 240 + "-" + uuid.uuid4().hex[:15]
    assert len(name) == 256
    image = push_image(client, name, "v1")
    assert client.get(f"/v2/{name}/manifests/v1").content == image.body


# -- digests --------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_malformed_digests_are_digest_invalid(server: ServerProcess, client: httpx.Client, repo: str,
                                              untouched: None, bad: str) -> None:
    for method in ("GET", "DELETE"):
        for kind in ("blobs", "referrers", "manifests"):
            if method == "DELETE" and kind == "referrers":
                continue
            resp = raw_request(server, method, f"/v2/{repo}/{kind}/{bad}")
            assert_raw_oci_error(resp, 400, "DIGEST_INVALID")
    head = raw_request(server, "HEAD", f"/v2/{repo}/blobs/{bad}")
    assert head.status == 400
    assert head.body == b""
    manifest = image_manifest(b"{}", [])
    resp = raw_request(server, "PUT", f"/v2/{repo}/manifests/{bad}", manifest, {"Content-Type": OCI_MANIFEST})
    assert_raw_oci_error(resp, 400, "DIGEST_INVALID")
    # As the digest parameter of a single POST and of a closing PUT.
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": bad}, content=b"data")
    assert_oci_error(r, 400, "DIGEST_INVALID")
    location = start_upload(client, repo)
    r = client.put(location, params={"digest": bad}, content=b"data")
    assert_oci_error(r, 400, "DIGEST_INVALID")
    client.delete(location)


@pytest.mark.parametrize("path", [
    "/v2/{repo}/blobs/sha256:../..",
    "/v2/{repo}/blobs/sha256:../../../master.key",
    "/v2/{repo}/blobs/sha256:..%2F..%2F..%2Fmaster.key",
    "/v2/{repo}/blobs/..%2F..%2Fmaster.key",
    "/v2/{repo}/blobs/uploads/..%2F..%2Fmaster.key",
    "/v2/{repo}/blobs/uploads/../../master.key",
    "/v2/{repo}/manifests/..%2F..%2Fmaster.key",
    "/v2/{repo}/referrers/sha256:..%2F..%2Fmeta.db",
])
def test_traversal_in_digest_or_upload_position(server: ServerProcess, repo: str, untouched: None,
                                                path: str) -> None:
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        resp = raw_request(server, method, path.format(repo=repo), b"overwrite attempt",
                           {"Content-Type": "application/octet-stream"})
        assert 400 <= resp.status < 500, (method, resp.status, resp.body)
        errors = resp.json()["errors"]
        assert errors[0]["code"] in {"DIGEST_INVALID", "NAME_INVALID", "TAG_INVALID", "BLOB_UPLOAD_UNKNOWN",
                                     "UNSUPPORTED"}, method
    assert (server.data_dir / "master.key").stat().st_size > 0


# -- tags -----------------------------------------------------------------------------------

@pytest.mark.parametrize("tag", ["a" * 129, ".dot", "-dash", "sp%20ace", "caf%C3%A9", "tab%09", "cr%0D",
                                 "new%0Aline", "q%3Fx", "h%23x"])
def test_invalid_tags_are_tag_invalid(server: ServerProcess, client: httpx.Client, repo: str,
                                      image: Pushed, tag: str) -> None:
    resp = raw_request(server, "PUT", f"/v2/{repo}/manifests/{tag}", image.body, {"Content-Type": OCI_MANIFEST})
    assert_raw_oci_error(resp, 400, "TAG_INVALID")
    assert_raw_oci_error(raw_request(server, "DELETE", f"/v2/{repo}/manifests/{tag}"), 400, "TAG_INVALID")
    # A pull finds no manifest under a reference no tag can have: 404 (the OCI conformance suite).
    assert_raw_oci_error(raw_request(server, "GET", f"/v2/{repo}/manifests/{tag}"), 404, "MANIFEST_UNKNOWN")
    head = raw_request(server, "HEAD", f"/v2/{repo}/manifests/{tag}")
    assert head.status == 404
    assert head.body == b""
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] in ([], None)


# -- upload ids -----------------------------------------------------------------------------

def _upload_errors(server: ServerProcess, repo: str, upload_id: str) -> list[tuple[int, str, str]]:
    """(status, code, message) of GET, PATCH, PUT and DELETE on an upload id, sent raw."""
    base = f"/v2/{repo}/blobs/uploads/{upload_id}"
    responses = [
        raw_request(server, "GET", base),
        raw_request(server, "PATCH", base, b"chunk", {"Content-Range": "0-4"}),
        raw_request(server, "PUT", f"{base}?digest={digest(b'chunk')}", b"chunk"),
        raw_request(server, "DELETE", base),
    ]
    out = []
    for r in responses:
        assert_raw_oci_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
        error = r.json()["errors"][0]
        out.append((r.status, error["code"], error["message"]))
    return out


def test_unknown_upload_ids_are_indistinguishable(server: ServerProcess, client: httpx.Client,
                                                   repo: str) -> None:
    other = unique_repo("owner")
    foreign_location = start_upload(client, other)
    foreign_id = urlsplit(foreign_location).path.rsplit("/", 1)[1]
    candidates = {
        "unknown-dashed": str(uuid.uuid4()),
        "unknown-hex": uuid.uuid4().hex,
        "upper-case": str(uuid.uuid4()).upper(),
        "too-long": "a" * 300,
        "short": "abc",
        "dots": "..",
        "escaped-dots": "%2e%2e",
        "tab": "%09" + str(uuid.uuid4()),
        "another-repository's": foreign_id,
    }
    seen = {label: _upload_errors(server, repo, upload_id) for label, upload_id in candidates.items()}
    # Every method answers the same way whichever the reason: nothing tells them apart.
    reference = seen["unknown-dashed"]
    for label, errors in seen.items():
        assert errors == reference, label
    # The foreign session was not disturbed by the attempts and still completes in its own repository.
    r = client.put(foreign_location, params={"digest": digest(b"mine")}, content=b"mine")
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{repo}/blobs/{digest(b'mine')}").status_code == 404


def test_upload_id_of_another_repository_cannot_write_there(client: httpx.Client, repo: str) -> None:
    other = unique_repo("owner")
    location = start_upload(client, other)
    upload_id = urlsplit(location).path.rsplit("/", 1)[1]
    assert client.patch(f"/v2/{repo}/blobs/uploads/{upload_id}", content=b"intruder").status_code == 404
    status = client.get(location)
    assert status.status_code == 204
    assert status.headers["range"].removeprefix("bytes=") == "0-0"


# -- methods and unknown endpoints ----------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v2/{repo}/manifests/latest"),
    ("PATCH", "/v2/{repo}/manifests/latest"),
    ("PUT", "/v2/{repo}/blobs/" + VALID_DIGEST),
    ("POST", "/v2/{repo}/blobs/" + VALID_DIGEST),
    ("DELETE", "/v2/{repo}/tags/list"),
    ("PUT", "/v2/{repo}/referrers/" + VALID_DIGEST),
    ("GET", "/v2/{repo}/blobs/uploads/"),
    ("DELETE", "/v2/"),
    ("POST", "/v2/_catalog"),
])
def test_method_not_allowed(client: httpx.Client, repo: str, method: str, path: str) -> None:
    r = client.request(method, path.format(repo=repo), content=b"")
    assert_oci_error(r, 405, "UNSUPPORTED")
    assert r.headers.get("allow")


@pytest.mark.parametrize("path", ["/v2/{repo}/unknown", "/v2/{repo}/blobs", "/v2/{repo}/manifests",
                                  "/v2/{repo}/tags", "/v2/{repo}/tags/other"])
def test_unknown_endpoints_answer_with_oci_errors(client: httpx.Client, repo: str, path: str) -> None:
    r = client.get(path.format(repo=repo))
    assert_oci_error(r, (400, 404, 405))


# -- request bodies -------------------------------------------------------------------------

def test_manifest_put_without_content_type_is_still_validated(client: httpx.Client, repo: str) -> None:
    assert_oci_error(client.put(f"/v2/{repo}/manifests/x", content=b"{}"), 400, "MANIFEST_INVALID")
