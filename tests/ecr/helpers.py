"""Shared helpers for the ECR face tests: clients, raw signed requests, image building and pushing.

Every test shares one live server for the session, so each works in repositories of its own
(see unique_name) and never assumes an empty registry.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import botocore.config
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.support.server import ServerProcess

ACCOUNT = "000000000000"
OTHER_ACCOUNT = "111122223333"
REGION = "us-east-1"
TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921"
AMZ_JSON = "application/x-amz-json-1.1"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MIB = 1024 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unique_name(prefix: str = "t") -> str:
    return f"ecr-tests/{prefix}-{uuid.uuid4().hex[:10]}"


# -- clients --------------------------------------------------------------------------------

def ecr_client(server: ServerProcess, *, key_id: str | None = None, secret: str | None = None,
               region: str = REGION, **config: Any) -> Any:
    """A boto3 ECR client for the server; no retries, so errors surface at once."""
    cfg = botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60,
                                 **config)
    return boto3.client("ecr", endpoint_url=server.url, region_name=region,
                        aws_access_key_id=key_id or server.key_id,
                        aws_secret_access_key=secret or server.secret, config=cfg)


@contextmanager
def raises(code: str, match: str | None = None) -> Iterator[pytest.ExceptionInfo[ClientError]]:
    """Expect a boto3 ClientError with this error code (and a message containing `match`)."""
    with pytest.raises(ClientError) as info:
        yield info
    error = info.value.response["Error"]
    assert error["Code"] == code, info.value.response
    if match is not None:
        assert match in error["Message"], error["Message"]


def signed_request(server: ServerProcess, operation: str, body: bytes | dict[str, Any] | str, *,
                   key_id: str | None = None, secret: str | None = None, region: str = REGION,
                   service: str = "ecr", when: datetime.datetime | None = None,
                   target: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
    """POST / signed with botocore's own SigV4 signer, with any body, scope or clock."""
    if isinstance(body, dict):
        data = json.dumps(body).encode()
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body
    request = AWSRequest(method="POST", url=server.url + "/", data=data, headers={
        "Content-Type": AMZ_JSON, "X-Amz-Target": target or f"{TARGET_PREFIX}.{operation}", **(headers or {})})
    signer = botocore.auth.SigV4Auth(Credentials(key_id or server.key_id, secret or server.secret),
                                     service, region)
    if when is None:
        signer.add_auth(request)
    else:
        naive = when.astimezone(datetime.UTC).replace(tzinfo=None)
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=naive):
            signer.add_auth(request)
    prepared = request.prepare()
    return httpx.post(prepared.url, content=data, headers=dict(prepared.headers.items()), timeout=60)


def unsigned_request(server: ServerProcess, operation: str, body: bytes = b"{}",
                     headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(server.url + "/", content=body, timeout=60, headers={
        "Content-Type": AMZ_JSON, "X-Amz-Target": f"{TARGET_PREFIX}.{operation}", **(headers or {})})


def ecr_error(resp: httpx.Response, exception: str, status: int = 400) -> str:
    """Assert a JSON 1.1 error response; returns its message."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith(AMZ_JSON), resp.headers
    assert resp.headers.get("x-amzn-requestid"), resp.headers
    doc = resp.json()
    assert doc["__type"] == exception, doc
    message = doc.get("message")
    assert isinstance(message, str) and message, doc
    return message


# -- images ---------------------------------------------------------------------------------

@dataclass
class Built:
    """An image's documents and blobs, ready to push through either face."""

    manifest: bytes
    media_type: str
    config: bytes
    layers: list[bytes] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def blobs(self) -> list[bytes]:
        return [self.config, *self.layers]

    @property
    def layer_bytes(self) -> int:
        return sum(len(layer) for layer in self.layers)


def build_image(layers: list[bytes] | None = None, *, oci: bool = False, artifact_type: str | None = None,
                subject: Built | None = None, label: str = "") -> Built:
    """A schema 2 image (Docker by default, OCI with oci=True) over random or given layers."""
    layers = [os.urandom(256 + i) for i in range(2)] if layers is None else layers
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Labels": {"t": label or uuid.uuid4().hex}},
        "rootfs": {"type": "layers", "diff_ids": [sha256(x) for x in layers]},
    }, sort_keys=True).encode()
    media_type = OCI_MANIFEST if oci or artifact_type or subject else DOCKER_MANIFEST
    config_type = OCI_CONFIG if media_type == OCI_MANIFEST else DOCKER_CONFIG
    layer_type = OCI_LAYER if media_type == OCI_MANIFEST else DOCKER_LAYER
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": sha256(x), "size": len(x)} for x in layers],
    }
    if artifact_type:
        doc["artifactType"] = artifact_type
    if subject is not None:
        doc["subject"] = {"mediaType": subject.media_type, "digest": subject.digest,
                          "size": len(subject.manifest)}
    return Built(json.dumps(doc, indent=2).encode(), media_type, config, layers)


def build_index(children: list[Built], *, docker: bool = False) -> bytes:
    media_type = DOCKER_LIST if docker else OCI_INDEX
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": [
        {"mediaType": c.media_type, "digest": c.digest, "size": len(c.manifest),
         "platform": {"architecture": f"arch{i}", "os": "linux"}} for i, c in enumerate(children)]}).encode()


def upload_layer(ecr: Any, repo: str, data: bytes, part_size: int | None = None) -> str:
    """InitiateLayerUpload, UploadLayerPart (in parts), CompleteLayerUpload; returns the digest."""
    digest = sha256(data)
    upload = ecr.initiate_layer_upload(repositoryName=repo)
    size = part_size or max(len(data), 1)
    for first in range(0, len(data), size):
        part = data[first:first + size]
        ecr.upload_layer_part(repositoryName=repo, uploadId=upload["uploadId"], partFirstByte=first,
                              partLastByte=first + len(part) - 1, layerPartBlob=part)
    done = ecr.complete_layer_upload(repositoryName=repo, uploadId=upload["uploadId"], layerDigests=[digest])
    assert done["layerDigest"] == digest
    return digest


def push_ecr(ecr: Any, repo: str, image: Built, tag: str | None = None) -> dict[str, Any]:
    """Push an image through the ECR API only (layers that already exist are skipped)."""
    digests = [sha256(b) for b in image.blobs]
    have = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=digests)["layers"]
    present = {x["layerDigest"] for x in have if x["layerAvailability"] == "AVAILABLE"}
    for blob in image.blobs:
        if sha256(blob) not in present:
            upload_layer(ecr, repo, blob)
            present.add(sha256(blob))
    kwargs: dict[str, Any] = {"repositoryName": repo, "imageManifest": image.manifest.decode(),
                              "imageManifestMediaType": image.media_type}
    if tag is not None:
        kwargs["imageTag"] = tag
    result: dict[str, Any] = ecr.put_image(**kwargs)["image"]
    return result


def v2_client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=server.auth, timeout=60)


def push_blob_v2(client: httpx.Client, repo: str, data: bytes) -> str:
    digest = sha256(data)
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data,
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return digest


def push_v2(client: httpx.Client, repo: str, image: Built, reference: str | None = None) -> httpx.Response:
    """Push blobs and the manifest through /v2; returns the manifest PUT response (unchecked)."""
    for blob in image.blobs:
        push_blob_v2(client, repo, blob)
    return client.put(f"/v2/{repo}/manifests/{reference or image.digest}", content=image.manifest,
                      headers={"Content-Type": image.media_type})
