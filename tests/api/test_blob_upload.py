"""Push workflow, blob side: POST/PUT, single POST, chunked PATCH, status, cancel, mount."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.api.helpers import (
    assert_oci_error,
    blob_exists,
    digest,
    push_blob,
    random_bytes,
    start_upload,
    unique_repo,
)
from tests.support.server import ServerProcess

OCTET = {"Content-Type": "application/octet-stream"}


def _range_end(resp: httpx.Response) -> int:
    """The last byte offset in an upload Range header ('0-<end>', optionally 'bytes=0-<end>')."""
    value = resp.headers["range"].removeprefix("bytes=")
    start, _, end = value.partition("-")
    assert start == "0", value
    return int(end)


def _patch(client: httpx.Client, location: str, chunk: bytes, start: int | None) -> httpx.Response:
    headers = dict(OCTET)
    if start is not None:
        headers["Content-Range"] = f"{start}-{start + len(chunk) - 1}"
    return client.patch(location, content=chunk, headers=headers)


def _get_blob(client: httpx.Client, repo: str, d: str) -> bytes:
    r = client.get(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200, r.text
    assert r.headers["docker-content-digest"] == d
    return r.content


# -- monolithic -----------------------------------------------------------------------------

def test_post_returns_202_with_location_and_range(client: httpx.Client) -> None:
    repo = unique_repo()
    r = client.post(f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202
    assert r.headers["location"].startswith(f"/v2/{repo}/blobs/uploads/")
    assert _range_end(r) == 0
    assert r.content == b""


def test_post_then_put_monolithic(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(1000)
    d = digest(data)
    location = start_upload(client, repo)
    r = client.put(location, params={"digest": d}, content=data, headers=OCTET)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d
    # The Location of the created blob is pullable and serves exactly the bytes pushed.
    got = client.get(r.headers["location"])
    assert got.status_code == 200
    assert got.content == data
    assert _get_blob(client, repo, d) == data


def test_single_post_with_digest(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(512)
    d = digest(data)
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data, headers=OCTET)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d
    assert client.get(r.headers["location"]).content == data
    assert _get_blob(client, repo, d) == data


def test_single_post_with_wrong_digest_is_rejected_and_not_stored(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(512)
    claimed = digest(data + b"oh no")
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": claimed}, content=data, headers=OCTET)
    assert_oci_error(r, 400, "DIGEST_INVALID")
    assert not blob_exists(client, repo, claimed)
    assert not blob_exists(client, repo, digest(data))


def test_put_with_wrong_digest_is_rejected_and_not_stored(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(700)
    claimed = digest(data + b"x")
    location = start_upload(client, repo)
    r = client.put(location, params={"digest": claimed}, content=data, headers=OCTET)
    assert_oci_error(r, 400, "DIGEST_INVALID")
    assert not blob_exists(client, repo, claimed)
    assert not blob_exists(client, repo, digest(data))
    assert_oci_error(client.get(f"/v2/{repo}/blobs/{claimed}"), 404, "BLOB_UNKNOWN")


def test_put_without_digest_parameter_does_not_complete(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(100)
    location = start_upload(client, repo)
    r = client.put(location, content=data, headers=OCTET)
    assert_oci_error(r, 400, "DIGEST_INVALID")
    assert not blob_exists(client, repo, digest(data))


def test_empty_blob(client: httpx.Client) -> None:
    repo = unique_repo()
    d = push_blob(client, repo, b"")
    r = client.get(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == "0"


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_post_put_per_algorithm(client: httpx.Client, algorithm: str) -> None:
    repo = unique_repo()
    data = random_bytes(2048)
    d = push_blob(client, repo, data, algorithm)
    assert d.startswith(f"{algorithm}:")
    assert _get_blob(client, repo, d) == data
    head = client.head(f"/v2/{repo}/blobs/{d}")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(data))


def test_sha512_single_post_and_wrong_sha512(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(300)
    d = digest(data, "sha512")
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data, headers=OCTET)
    assert r.status_code == 201, r.text
    assert _get_blob(client, repo, d) == data
    wrong = digest(data + b"!", "sha512")
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": wrong}, content=data, headers=OCTET)
    assert_oci_error(r, 400, "DIGEST_INVALID")
    assert not blob_exists(client, repo, wrong)


def test_large_blob_streamed_in_several_batches(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(21 * 1024 * 1024 + 17)  # several 4 MiB batches, several 8 MiB writeback windows
    d = push_blob(client, repo, data)
    assert _get_blob(client, repo, d) == data


# -- chunked --------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_chunked_upload_in_order(client: httpx.Client, algorithm: str) -> None:
    repo = unique_repo()
    data = random_bytes(3000)
    chunks = [data[:1000], data[1000:2000], data[2000:]]
    location = start_upload(client, repo)
    offset = 0
    for chunk in chunks:
        r = _patch(client, location, chunk, offset)
        assert r.status_code == 202, r.text
        offset += len(chunk)
        assert _range_end(r) == offset - 1
        location = r.headers["location"]
        assert location
    d = digest(data, algorithm)
    r = client.put(location, params={"digest": d}, headers={"Content-Length": "0"})
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d
    assert r.headers["location"]
    assert _get_blob(client, repo, d) == data


def test_chunked_upload_final_chunk_in_put_body(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(2500)
    location = start_upload(client, repo)
    r = _patch(client, location, data[:1500], 0)
    assert r.status_code == 202
    location = r.headers["location"]
    d = digest(data)
    r = client.put(location, params={"digest": d}, content=data[1500:],
                   headers={**OCTET, "Content-Range": f"1500-{len(data) - 1}"})
    assert r.status_code == 201, r.text
    assert _get_blob(client, repo, d) == data


def test_streamed_patch_without_content_range(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(4096)
    location = start_upload(client, repo)
    r = _patch(client, location, data, None)
    assert r.status_code == 202, r.text
    assert _range_end(r) == len(data) - 1
    d = digest(data)
    r = client.put(r.headers["location"], params={"digest": d}, headers={"Content-Length": "0"})
    assert r.status_code == 201, r.text
    assert _get_blob(client, repo, d) == data


def test_chunked_upload_with_large_chunks(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(19 * 1024 * 1024 + 333)  # each half spans batches and writeback windows
    location = start_upload(client, repo)
    half = len(data) // 2
    r = _patch(client, location, data[:half], 0)
    assert r.status_code == 202
    r = _patch(client, r.headers["location"], data[half:], half)
    assert r.status_code == 202
    d = digest(data)
    r = client.put(r.headers["location"], params={"digest": d}, headers={"Content-Length": "0"})
    assert r.status_code == 201, r.text
    assert _get_blob(client, repo, d) == data


def test_upload_status_reports_range_and_location(client: httpx.Client) -> None:
    repo = unique_repo()
    location = start_upload(client, repo)
    r = client.get(location)
    assert r.status_code == 204
    assert r.headers["location"]
    assert _range_end(r) == 0
    r = _patch(client, location, random_bytes(1234), 0)
    assert r.status_code == 202
    r = client.get(r.headers["location"])
    assert r.status_code == 204
    assert r.content == b""
    assert r.headers["location"]
    assert _range_end(r) == 1233


def test_out_of_order_chunk_is_416_with_current_range(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(3000)
    location = start_upload(client, repo)
    # Skipping ahead before anything was uploaded.
    r = _patch(client, location, data[1000:2000], 1000)
    assert_oci_error(r, 416, "BLOB_UPLOAD_INVALID")
    assert _range_end(r) == 0
    r = _patch(client, location, data[:1000], 0)
    assert r.status_code == 202
    location = r.headers["location"]
    # Skipping ahead in the middle.
    r = _patch(client, location, data[2000:], 2000)
    assert r.status_code == 416
    assert _range_end(r) == 999
    # Repeating the chunk already received.
    r = _patch(client, location, data[:1000], 0)
    assert r.status_code == 416
    assert _range_end(r) == 999
    # An out-of-order final chunk in the closing PUT is refused the same way.
    r = client.put(location, params={"digest": digest(data)}, content=data[2000:],
                   headers={**OCTET, "Content-Range": f"2000-{len(data) - 1}"})
    assert r.status_code == 416
    assert _range_end(r) == 999
    # The session survives a 416: status still says 0-999, and the upload can resume.
    status = client.get(location)
    assert status.status_code == 204
    assert _range_end(status) == 999
    r = _patch(client, status.headers["location"], data[1000:2000], 1000)
    assert r.status_code == 202
    r = client.put(r.headers["location"], params={"digest": digest(data)}, content=data[2000:],
                   headers={**OCTET, "Content-Range": f"2000-{len(data) - 1}"})
    assert r.status_code == 201, r.text
    assert _get_blob(client, repo, digest(data)) == data


@pytest.mark.parametrize("content_range", ["abc", "10-5", "bytes=x-y", "-5"])
def test_malformed_content_range_is_416(client: httpx.Client, content_range: str) -> None:
    repo = unique_repo()
    location = start_upload(client, repo)
    r = client.patch(location, content=b"12345", headers={**OCTET, "Content-Range": content_range})
    assert_oci_error(r, 416, "BLOB_UPLOAD_INVALID")
    assert _range_end(client.get(location)) == 0


def test_content_range_length_mismatch_is_416_and_session_survives(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(200)
    location = start_upload(client, repo)
    r = client.patch(location, content=data[:100], headers={**OCTET, "Content-Range": "0-49"})
    assert r.status_code == 416
    assert _range_end(client.get(location)) == 0
    r = _patch(client, location, data, 0)
    assert r.status_code == 202
    r = client.put(r.headers["location"], params={"digest": digest(data)}, headers={"Content-Length": "0"})
    assert r.status_code == 201, r.text
    assert _get_blob(client, repo, digest(data)) == data


def test_chunked_upload_with_wrong_digest(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(1500)
    location = start_upload(client, repo)
    r = _patch(client, location, data, 0)
    assert r.status_code == 202
    wrong = digest(data + b"oh no")
    r = client.put(r.headers["location"], params={"digest": wrong}, headers={"Content-Length": "0"})
    assert_oci_error(r, 400, "DIGEST_INVALID")
    assert not blob_exists(client, repo, wrong)
    assert not blob_exists(client, repo, digest(data))


def test_upload_session_is_per_request_independent(client: httpx.Client) -> None:
    """Two sessions in the same repository do not share state."""
    repo = unique_repo()
    a, b = random_bytes(100), random_bytes(150)
    loc_a, loc_b = start_upload(client, repo), start_upload(client, repo)
    assert loc_a != loc_b
    assert _patch(client, loc_a, a, 0).status_code == 202
    assert _patch(client, loc_b, b, 0).status_code == 202
    assert client.put(loc_b, params={"digest": digest(b)}).status_code == 201
    assert client.put(loc_a, params={"digest": digest(a)}).status_code == 201
    assert _get_blob(client, repo, digest(a)) == a
    assert _get_blob(client, repo, digest(b)) == b


# -- cancel ---------------------------------------------------------------------------------

def test_cancel_upload_then_session_is_unknown(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(100)
    location = start_upload(client, repo)
    assert _patch(client, location, data, 0).status_code == 202
    r = client.delete(location)
    assert r.status_code == 204
    assert_oci_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_oci_error(_patch(client, location, data, 100), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_oci_error(client.put(location, params={"digest": digest(data)}), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_oci_error(client.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert not blob_exists(client, repo, digest(data))


def test_completed_session_is_unknown_afterwards(client: httpx.Client) -> None:
    repo = unique_repo()
    data = random_bytes(64)
    location = start_upload(client, repo)
    assert client.put(location, params={"digest": digest(data)}, content=data).status_code == 201
    assert_oci_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_oci_error(_patch(client, location, data, 64), 404, "BLOB_UPLOAD_UNKNOWN")


# -- cross-repository mount -----------------------------------------------------------------

def test_mount_from_repository_that_has_the_blob(client: httpx.Client) -> None:
    source, target = unique_repo("src"), unique_repo("dst")
    data = random_bytes(512)
    d = push_blob(client, source, data)
    assert not blob_exists(client, target, d)
    r = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": d, "from": source},
                    headers={"Content-Length": "0"})
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d
    assert client.get(r.headers["location"]).content == data
    assert _get_blob(client, target, d) == data
    # The two links are independent: deleting one leaves the other.
    assert client.delete(f"/v2/{source}/blobs/{d}").status_code == 202
    assert _get_blob(client, target, d) == data


@pytest.mark.parametrize("source_kind", ["lacks-blob", "missing-repo", "invalid-name", "no-from"])
def test_mount_falls_back_to_upload_session(client: httpx.Client, source_kind: str) -> None:
    target = unique_repo("dst")
    data = random_bytes(256)
    d = digest(data)
    params = {"mount": d}
    if source_kind == "lacks-blob":
        other = unique_repo("src")
        push_blob(client, other, random_bytes(10))
        params["from"] = other
    elif source_kind == "missing-repo":
        params["from"] = unique_repo("nowhere")
    elif source_kind == "invalid-name":
        params["from"] = "../Not-A-Repo"
    r = client.post(f"/v2/{target}/blobs/uploads/", params=params, headers={"Content-Length": "0"})
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    assert not blob_exists(client, target, d)
    # The 202 is a real upload session the client can finish.
    r = client.put(location, params={"digest": d}, content=data, headers=OCTET)
    assert r.status_code == 201, r.text
    assert _get_blob(client, target, d) == data


def test_mount_does_not_leak_blobs_from_a_repository_without_them(client: httpx.Client) -> None:
    """A blob stored for repository A cannot be mounted via repository B that lacks it."""
    a, b, target = unique_repo("a"), unique_repo("b"), unique_repo("dst")
    d = push_blob(client, a, random_bytes(99))
    push_blob(client, b, random_bytes(5))
    r = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": d, "from": b})
    assert r.status_code == 202
    assert not blob_exists(client, target, d)


# -- a client that goes away half-way ----------------------------------------------------------

def _send_part_then_hang_up(server: ServerProcess, method: str, path: str, declared: int, body: bytes) -> None:
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {server.address}\r\n"
                     f"Authorization: {server.basic_header}\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Length: {declared}\r\n\r\n".encode() + body)
        time.sleep(0.3)  # let the server take in what was sent before the connection drops


def test_cut_off_patch_leaves_the_session_at_its_last_complete_chunk(client: httpx.Client,
                                                                     server: ServerProcess) -> None:
    repo = unique_repo()
    data = random_bytes(12 * 1024 * 1024 + 5)
    location = start_upload(client, repo)
    r = _patch(client, location, data[:1000], 0)
    assert r.status_code == 202
    location = r.headers["location"]
    # 10 MiB of a declared 11 MiB: more than a batch went to the hashing and writing threads
    _send_part_then_hang_up(server, "PATCH", location, 11 * 1024 * 1024, data[1000:1000 + 10 * 1024 * 1024])
    for _ in range(50):
        r = client.get(location)
        if r.status_code == 204:
            break
        time.sleep(0.1)  # 416 while the server still holds the dropped request's lock
    assert r.status_code == 204
    assert _range_end(r) == 999
    r = _patch(client, r.headers["location"], data[1000:], 1000)
    assert r.status_code == 202, r.text
    d = digest(data)
    r = client.put(r.headers["location"], params={"digest": d}, headers={"Content-Length": "0"})
    assert r.status_code == 201, r.text
    assert _get_blob(client, repo, d) == data


def test_cut_off_monolithic_push_stores_nothing(client: httpx.Client, server: ServerProcess) -> None:
    repo = unique_repo()
    data = random_bytes(9 * 1024 * 1024)
    d = digest(data)
    _send_part_then_hang_up(server, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}", len(data), data[:-4096])
    time.sleep(0.2)
    assert not blob_exists(client, repo, d)
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data, headers=OCTET)
    assert r.status_code == 201, r.text
    assert _get_blob(client, repo, d) == data
