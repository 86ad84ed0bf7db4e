"""Pull and content management, blob side: GET/HEAD, Range requests, DELETE."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import assert_oci_error, digest, push_blob, random_bytes, unique_repo


@pytest.fixture()
def stored(client: httpx.Client) -> tuple[str, str, bytes]:
    """A 2048-byte blob in a fresh repository: (repo, digest, data)."""
    repo = unique_repo()
    data = random_bytes(2048)
    return repo, push_blob(client, repo, data), data


def test_get_blob(client: httpx.Client, stored: tuple[str, str, bytes]) -> None:
    repo, d, data = stored
    r = client.get(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["docker-content-digest"] == d
    assert r.headers["content-length"] == str(len(data))
    assert digest(r.content) == r.headers["docker-content-digest"]


def test_head_blob(client: httpx.Client, stored: tuple[str, str, bytes]) -> None:
    repo, d, data = stored
    r = client.head(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["docker-content-digest"] == d
    assert r.headers["content-length"] == str(len(data))


def test_get_and_head_unknown_blob(client: httpx.Client, stored: tuple[str, str, bytes]) -> None:
    repo, _, _ = stored
    missing = digest(random_bytes(16))
    assert_oci_error(client.get(f"/v2/{repo}/blobs/{missing}"), 404, "BLOB_UNKNOWN")
    r = client.head(f"/v2/{repo}/blobs/{missing}")
    assert r.status_code == 404
    assert r.content == b""


def test_blob_in_unknown_repository(client: httpx.Client, stored: tuple[str, str, bytes]) -> None:
    _, d, _ = stored
    assert_oci_error(client.get(f"/v2/{unique_repo('nowhere')}/blobs/{d}"), 404, "NAME_UNKNOWN")


def test_blob_of_another_repository_is_not_visible(client: httpx.Client,
                                                   stored: tuple[str, str, bytes]) -> None:
    _, d, _ = stored
    other = unique_repo()
    push_blob(client, other, b"something else")
    assert_oci_error(client.get(f"/v2/{other}/blobs/{d}"), 404, "BLOB_UNKNOWN")
    assert client.head(f"/v2/{other}/blobs/{d}").status_code == 404


def test_large_blob_round_trip(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(3 * 1024 * 1024 + 1)
    d = push_blob(client, repo, data)
    r = client.get(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(data))
    assert r.content == data


@pytest.mark.parametrize(("range_header", "start", "end"), [
    ("bytes=500-1499", 500, 1499),
    ("bytes=500-", 500, 2047),
    ("bytes=-500", 1548, 2047),
    ("bytes=2000-5000", 2000, 2047),  # the end is clamped to the blob
    ("bytes=0-0", 0, 0),
    ("bytes=2047-2047", 2047, 2047),
    ("bytes=-5000", 0, 2047),  # a suffix longer than the blob is the whole blob
])
def test_range_request(client: httpx.Client, stored: tuple[str, str, bytes], range_header: str,
                       start: int, end: int) -> None:
    repo, d, data = stored
    r = client.get(f"/v2/{repo}/blobs/{d}", headers={"Range": range_header})
    assert r.status_code == 206, r.text
    assert r.content == data[start:end + 1]
    assert r.headers["content-length"] == str(end - start + 1)
    assert r.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
    assert r.headers["docker-content-digest"] == d


def test_range_request_on_head(client: httpx.Client, stored: tuple[str, str, bytes]) -> None:
    repo, d, _ = stored
    r = client.head(f"/v2/{repo}/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.content == b""
    assert r.headers["content-length"] == "10"
    assert r.headers["content-range"] == "bytes 10-19/2048"


def test_large_blob_range_request(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(3 * 1024 * 1024)
    d = push_blob(client, repo, data)
    start, end = 1024 * 1024 - 7, 2 * 1024 * 1024 + 5
    r = client.get(f"/v2/{repo}/blobs/{d}", headers={"Range": f"bytes={start}-{end}"})
    assert r.status_code == 206
    assert r.content == data[start:end + 1]


@pytest.mark.parametrize("range_header", ["bytes=500-0", "bytes=5000-10000", "bytes=2048-", "bytes=-0"])
def test_unsatisfiable_range_is_416(client: httpx.Client, stored: tuple[str, str, bytes],
                                    range_header: str) -> None:
    repo, d, data = stored
    r = client.get(f"/v2/{repo}/blobs/{d}", headers={"Range": range_header})
    assert_oci_error(r, 416)
    assert r.headers["content-range"] == f"bytes */{len(data)}"


def test_range_on_empty_blob_is_416(client: httpx.Client) -> None:
    repo = unique_repo()
    d = push_blob(client, repo, b"")
    r = client.get(f"/v2/{repo}/blobs/{d}", headers={"Range": "bytes=0-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */0"


def test_delete_blob(client: httpx.Client, stored: tuple[str, str, bytes]) -> None:
    repo, d, _ = stored
    r = client.delete(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 202
    assert_oci_error(client.get(f"/v2/{repo}/blobs/{d}"), 404, "BLOB_UNKNOWN")
    assert client.head(f"/v2/{repo}/blobs/{d}").status_code == 404
    assert_oci_error(client.delete(f"/v2/{repo}/blobs/{d}"), 404, "BLOB_UNKNOWN")


def test_delete_unknown_blob(client: httpx.Client, stored: tuple[str, str, bytes]) -> None:
    repo, _, _ = stored
    assert_oci_error(client.delete(f"/v2/{repo}/blobs/{digest(b'never pushed')}"), 404, "BLOB_UNKNOWN")
    assert_oci_error(client.delete(f"/v2/{unique_repo('nowhere')}/blobs/{digest(b'x')}"), 404,
                     "NAME_UNKNOWN")


def test_delete_in_one_repository_keeps_the_blob_elsewhere(client: httpx.Client) -> None:
    a, b = unique_repo("a"), unique_repo("b")
    data = random_bytes(300)
    d = push_blob(client, a, data)
    assert push_blob(client, b, data) == d
    assert client.delete(f"/v2/{a}/blobs/{d}").status_code == 202
    assert client.get(f"/v2/{a}/blobs/{d}").status_code == 404
    assert client.get(f"/v2/{b}/blobs/{d}").content == data


def test_blob_can_be_pushed_again_after_delete(client: httpx.Client, stored: tuple[str, str, bytes]) -> None:
    repo, d, data = stored
    assert client.delete(f"/v2/{repo}/blobs/{d}").status_code == 202
    assert push_blob(client, repo, data) == d
    assert client.get(f"/v2/{repo}/blobs/{d}").content == data


def test_sha512_blob_pull_head_delete(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(777)
    d = push_blob(client, repo, data, "sha512")
    r = client.get(f"/v2/{repo}/blobs/{d}", headers={"Range": "bytes=7-"})
    assert r.status_code == 206
    assert r.content == data[7:]
    assert client.head(f"/v2/{repo}/blobs/{d}").headers["docker-content-digest"] == d
    assert client.delete(f"/v2/{repo}/blobs/{d}").status_code == 202
    assert client.head(f"/v2/{repo}/blobs/{d}").status_code == 404
