"""Both faces over one store: what one writes, the other reads."""

from __future__ import annotations

import base64
import os
from typing import Any

import httpx

from tests.ecr.helpers import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    build_image,
    build_index,
    push_ecr,
    push_v2,
    raises,
    sha256,
    unique_name,
)
from tests.support.server import ServerProcess


def _login(ecr: Any) -> tuple[str, str]:
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    return user, password


def test_image_pushed_with_ecr_api_is_pullable_via_v2(ecr: Any, repo: str, server: ServerProcess) -> None:
    image = build_image([os.urandom(6 * 1024 * 1024), os.urandom(1000)])
    put = push_ecr(ecr, repo, image, "release")
    assert put["imageId"]["imageDigest"] == image.digest
    # Pull as a registry client would, logged in with the ECR token.
    with httpx.Client(base_url=server.url, auth=_login(ecr), timeout=60) as v2:
        for reference in ("release", image.digest):
            r = v2.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": DOCKER_MANIFEST})
            assert r.status_code == 200, r.text
            assert r.content == image.manifest
            assert r.headers["Docker-Content-Digest"] == image.digest
            assert r.headers["content-type"].startswith(DOCKER_MANIFEST)
        for blob in image.blobs:
            r = v2.get(f"/v2/{repo}/blobs/{sha256(blob)}")
            assert r.status_code == 200
            assert r.content == blob
        tags = v2.get(f"/v2/{repo}/tags/list").json()
        assert tags == {"name": repo, "tags": ["release"]}
        assert repo in v2.get("/v2/_catalog", params={"n": 10000}).json()["repositories"]


def test_image_pushed_via_v2_is_visible_to_the_ecr_api(ecr: Any, repo: str, server: ServerProcess) -> None:
    image = build_image([b"x" * 4096, b"y" * 100], oci=True)
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=60) as v2:
        r = push_v2(v2, repo, image, "v2-tag")
        assert r.status_code == 201, r.text
    detail = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert len(detail) == 1
    assert detail[0]["imageDigest"] == image.digest
    assert detail[0]["imageTags"] == ["v2-tag"]
    assert detail[0]["imageSizeInBytes"] == 4096 + 100
    assert detail[0]["imageManifestMediaType"] == OCI_MANIFEST
    assert ecr.list_images(repositoryName=repo)["imageIds"] == [{"imageDigest": image.digest, "imageTag": "v2-tag"}]
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v2-tag"}])["images"][0]
    assert got["imageManifest"].encode() == image.manifest
    layers = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[sha256(b) for b in image.blobs])
    assert {x["layerAvailability"] for x in layers["layers"]} == {"AVAILABLE"}
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=sha256(b"x" * 4096))["downloadUrl"]
    assert httpx.get(url, timeout=30).content == b"x" * 4096


def test_push_via_v2_creates_the_repository(ecr: Any, server: ServerProcess) -> None:
    name = unique_name("created-on-push")
    image = build_image()
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=60) as v2:
        assert push_v2(v2, name, image, "latest").status_code == 201
    repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    assert repo["imageTagMutability"] == "MUTABLE"
    assert ecr.list_images(repositoryName=name)["imageIds"] == [{"imageDigest": image.digest, "imageTag": "latest"}]


def test_index_across_faces(ecr: Any, repo: str, server: ServerProcess) -> None:
    children = [build_image(oci=True) for _ in range(2)]
    for child in children:
        push_ecr(ecr, repo, child)
    index = build_index(children)
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=60) as v2:
        r = v2.put(f"/v2/{repo}/manifests/multi", content=index, headers={"Content-Type": OCI_INDEX})
        assert r.status_code == 201, r.text
        detail = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "multi"}])["imageDetails"][0]
        assert detail["imageManifestMediaType"] == OCI_INDEX
        assert detail["imageDigest"] == sha256(index)
        # Deleting through ECR is seen on /v2.
        out = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}])
        assert out["failures"] == []
        assert v2.get(f"/v2/{repo}/manifests/multi", headers={"Accept": OCI_INDEX}).status_code == 404
        assert v2.get(f"/v2/{repo}/manifests/{children[0].digest}",
                      headers={"Accept": OCI_MANIFEST}).status_code == 200


def test_deleted_repository_is_gone_on_v2(ecr: Any, repo: str, server: ServerProcess) -> None:
    image = build_image()
    push_ecr(ecr, repo, image, "v1")
    ecr.delete_repository(repositoryName=repo, force=True)
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=60) as v2:
        r = v2.get(f"/v2/{repo}/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
        assert r.status_code == 404
        assert r.json()["errors"][0]["code"] == "NAME_UNKNOWN"
        r = v2.get(f"/v2/{repo}/blobs/{sha256(image.config)}")
        assert r.status_code == 404
    with raises("RepositoryNotFoundException"):
        ecr.describe_images(repositoryName=repo)
