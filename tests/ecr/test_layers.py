"""Layer operations: BatchCheckLayerAvailability, the three-step layer upload, GetDownloadUrlForLayer."""

from __future__ import annotations

import base64
import itertools
import json
import os
from typing import Any

import httpx
import pytest

from tests.ecr.helpers import ACCOUNT, MIB, raises, sha256, unique_name, upload_layer
from tests.support.server import ServerProcess


def _initiate(ecr: Any, repo: str) -> str:
    out = ecr.initiate_layer_upload(repositoryName=repo)
    assert out["partSize"] >= 5 * MIB
    upload_id: str = out["uploadId"]
    return upload_id


def _part(ecr: Any, repo: str, upload_id: str, first: int, data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=first,
                                                partLastByte=first + len(data) - 1, layerPartBlob=data)
    return out


# -- BatchCheckLayerAvailability ------------------------------------------------------------

def test_batch_check_layer_availability(ecr: Any, repo: str) -> None:
    data = os.urandom(3000)
    digest = upload_layer(ecr, repo, data)
    absent = sha256(b"absent")
    out = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[digest, absent, "bogus"])
    layers = {x["layerDigest"]: x for x in out["layers"]}
    assert layers[digest]["layerAvailability"] == "AVAILABLE"
    assert layers[digest]["layerSize"] == 3000
    assert layers[digest]["mediaType"]
    assert layers[absent]["layerAvailability"] == "UNAVAILABLE"
    assert "layerSize" not in layers[absent]
    assert out["failures"] == [{"layerDigest": "bogus", "failureCode": "InvalidLayerDigest",
                                "failureReason": out["failures"][0]["failureReason"]}]
    assert out["failures"][0]["failureReason"]


def test_layers_are_per_repository(ecr: Any, repo: str) -> None:
    digest = upload_layer(ecr, repo, os.urandom(100))
    other = unique_name("other")
    ecr.create_repository(repositoryName=other)
    out = ecr.batch_check_layer_availability(repositoryName=other, layerDigests=[digest])
    assert out["layers"][0]["layerAvailability"] == "UNAVAILABLE"
    with raises("LayersNotFoundException"):
        ecr.get_download_url_for_layer(repositoryName=other, layerDigest=digest)


def test_batch_check_layer_availability_repository_not_found(ecr: Any) -> None:
    with raises("RepositoryNotFoundException"):
        ecr.batch_check_layer_availability(repositoryName=unique_name("gone"), layerDigests=[sha256(b"")])


# -- InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload ----------------------------

def test_upload_in_parts(ecr: Any, repo: str, server: ServerProcess) -> None:
    data = os.urandom(5 * MIB + 123) + os.urandom(5 * MIB) + b"tail"
    digest = sha256(data)
    upload_id = _initiate(ecr, repo)
    offsets = [0, 5 * MIB + 123, 10 * MIB + 123, len(data)]
    for first, end in itertools.pairwise(offsets):
        out = _part(ecr, repo, upload_id, first, data[first:end])
        assert out == {**out, "registryId": ACCOUNT, "repositoryName": repo, "uploadId": upload_id,
                       "lastByteReceived": end - 1}
    done = ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[digest])
    assert done == {**done, "registryId": ACCOUNT, "repositoryName": repo, "uploadId": upload_id,
                    "layerDigest": digest}
    check = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[digest])["layers"][0]
    assert check["layerAvailability"] == "AVAILABLE" and check["layerSize"] == len(data)
    # The same bytes through /v2.
    r = httpx.get(f"{server.url}/v2/{repo}/blobs/{digest}", auth=server.auth, timeout=60)
    assert r.status_code == 200 and r.content == data


def test_upload_part_out_of_order(ecr: Any, repo: str) -> None:
    upload_id = _initiate(ecr, repo)
    with raises("InvalidLayerPartException") as info:
        _part(ecr, repo, upload_id, 10, b"x" * 10)
    body = info.value.response
    assert body["uploadId"] == upload_id and body["repositoryName"] == repo and body["registryId"] == ACCOUNT
    assert body["lastValidByteReceived"] == 0
    first = os.urandom(5 * MIB)
    _part(ecr, repo, upload_id, 0, first)
    for bad_first in (0, 5 * MIB - 1, 5 * MIB + 1):
        with raises("InvalidLayerPartException") as info:
            _part(ecr, repo, upload_id, bad_first, b"y" * 10)
        assert info.value.response["lastValidByteReceived"] == 5 * MIB - 1
    # partLastByte that disagrees with the blob's length.
    with raises("InvalidLayerPartException"):
        ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=5 * MIB,
                              partLastByte=5 * MIB + 100, layerPartBlob=b"z" * 10)
    # The upload is still usable after the refused parts.
    _part(ecr, repo, upload_id, 5 * MIB, b"end")
    digest = sha256(first + b"end")
    assert ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id,
                                     layerDigests=[digest])["layerDigest"] == digest


def test_upload_part_too_small(ecr: Any, repo: str) -> None:
    upload_id = _initiate(ecr, repo)
    _part(ecr, repo, upload_id, 0, b"a" * 1024)  # fine as long as it turns out to be the last part
    with raises("LayerPartTooSmallException"):
        _part(ecr, repo, upload_id, 1024, b"b" * 1024)
    # A single small part is a whole layer.
    digest = sha256(b"a" * 1024)
    assert ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id,
                                     layerDigests=[digest])["layerDigest"] == digest


def test_complete_with_wrong_digest(ecr: Any, repo: str) -> None:
    upload_id = _initiate(ecr, repo)
    _part(ecr, repo, upload_id, 0, b"some layer")
    wrong = sha256(b"another layer")
    with raises("InvalidLayerException", wrong):
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[wrong])
    out = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[wrong, sha256(b"some layer")])
    assert {x["layerAvailability"] for x in out["layers"]} == {"UNAVAILABLE"}
    # The failed upload is gone.
    with raises("UploadNotFoundException"):
        _part(ecr, repo, upload_id, 10, b"more")


def test_complete_existing_layer(ecr: Any, repo: str) -> None:
    data = os.urandom(64)
    digest = upload_layer(ecr, repo, data)
    upload_id = _initiate(ecr, repo)
    _part(ecr, repo, upload_id, 0, data)
    with raises("LayerAlreadyExistsException", digest):
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[digest])


def test_complete_empty_upload(ecr: Any, repo: str) -> None:
    upload_id = _initiate(ecr, repo)
    with raises("EmptyUploadException", upload_id):
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[sha256(b"")])


def test_upload_unknown_and_foreign_upload_ids(ecr: Any, repo: str) -> None:
    unknown = "01234567-89ab-cdef-0123-456789abcdef"
    with raises("UploadNotFoundException"):
        _part(ecr, repo, unknown, 0, b"x")
    with raises("UploadNotFoundException"):
        ecr.complete_layer_upload(repositoryName=repo, uploadId=unknown, layerDigests=[sha256(b"x")])
    # An upload belongs to the repository it was started in.
    other = unique_name("other")
    ecr.create_repository(repositoryName=other)
    upload_id = _initiate(ecr, other)
    with raises("UploadNotFoundException"):
        _part(ecr, repo, upload_id, 0, b"x")


def test_initiate_layer_upload_needs_the_repository(ecr: Any) -> None:
    name = unique_name("gone")
    with raises("RepositoryNotFoundException", name):
        ecr.initiate_layer_upload(repositoryName=name)
    with raises("RepositoryNotFoundException"):
        ecr.describe_repositories(repositoryNames=[name])


@pytest.mark.parametrize("layer_digests", [["sha256:abc"], [sha256(b"a"), sha256(b"b")]])
def test_complete_invalid_digest_parameter(ecr: Any, repo: str, layer_digests: list[str]) -> None:
    upload_id = _initiate(ecr, repo)
    _part(ecr, repo, upload_id, 0, b"a")
    with raises("InvalidParameterException", "layerDigests"):
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=layer_digests)


# -- GetDownloadUrlForLayer -----------------------------------------------------------------

def test_download_url_returns_the_exact_bytes(ecr: Any, repo: str) -> None:
    data = os.urandom(200_000)
    digest = upload_layer(ecr, repo, data, part_size=len(data))
    out = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)
    assert out["layerDigest"] == digest
    url = out["downloadUrl"]
    r = httpx.get(url, timeout=60)  # no credentials: the URL itself is the grant
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-length"] == str(len(data))
    assert r.headers.get("docker-content-digest") == digest


def test_download_url_tampered(ecr: Any, repo: str) -> None:
    digest = upload_layer(ecr, repo, os.urandom(100))
    url: str = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
    base, _, grant = url.rpartition("/")
    for bad in (grant[:-2] + ("AA" if not grant.endswith("AA") else "BB"), grant[1:], "x" + grant, "garbage"):
        r = httpx.get(f"{base}/{bad}", timeout=30)
        assert r.status_code == 403, (bad, r.status_code, r.text)
        assert r.json()["errors"][0]["code"] == "DENIED"
    # A grant for one layer cannot be turned into one for another: the signature covers the digest.
    other = upload_layer(ecr, repo, os.urandom(100))
    body, _, mac = grant.partition(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert payload.get("d") == digest
    forged = base64.urlsafe_b64encode(json.dumps({**payload, "d": other}, separators=(",", ":")).encode())
    r = httpx.get(f"{base}/{forged.decode().rstrip('=')}.{mac}", timeout=30)
    assert r.status_code == 403, r.text
    assert httpx.get(url, timeout=30).status_code == 200


def test_download_url_errors(ecr: Any, repo: str) -> None:
    with raises("LayersNotFoundException"):
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=sha256(b"none"))
    with raises("RepositoryNotFoundException"):
        ecr.get_download_url_for_layer(repositoryName=unique_name("gone"), layerDigest=sha256(b"none"))
