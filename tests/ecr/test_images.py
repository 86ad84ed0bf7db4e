"""Image-level ECR operations: PutImage, ListImages, DescribeImages, BatchGetImage, BatchDeleteImage,
ListImageReferrers and tag immutability on both faces."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import httpx
import pytest

from cargohold.errors import TABLE, Kind
from tests.ecr.helpers import (
    ACCOUNT,
    DOCKER_CONFIG,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Built,
    build_image,
    build_index,
    push_ecr,
    push_v2,
    raises,
    sha256,
    unique_name,
    upload_layer,
)


def _ids(listing: list[dict[str, str]]) -> set[tuple[str, str | None]]:
    return {(i["imageDigest"], i.get("imageTag")) for i in listing}


def _all_list_images(ecr: Any, repo: str, **kwargs: Any) -> list[list[dict[str, str]]]:
    pages = []
    while True:
        page = ecr.list_images(repositoryName=repo, **kwargs)
        pages.append(page["imageIds"])
        if "nextToken" not in page:
            return pages
        kwargs["nextToken"] = page["nextToken"]


# -- PutImage -------------------------------------------------------------------------------

def test_put_image_returns_the_image(ecr: Any, repo: str) -> None:
    image = build_image()
    put = push_ecr(ecr, repo, image, "v1")
    assert put["registryId"] == ACCOUNT
    assert put["repositoryName"] == repo
    assert put["imageId"] == {"imageDigest": image.digest, "imageTag": "v1"}
    assert put["imageManifest"] == image.manifest.decode()
    assert put["imageManifestMediaType"] == DOCKER_MANIFEST


def test_put_image_without_tag_then_add_tags(ecr: Any, repo: str) -> None:
    image = build_image()
    put = push_ecr(ecr, repo, image)
    assert put["imageId"] == {"imageDigest": image.digest}
    # The same manifest under new tags just adds the tags.
    for tag in ("a", "b"):
        ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag=tag)
    assert _ids(ecr.list_images(repositoryName=repo)["imageIds"]) == {(image.digest, "a"), (image.digest, "b")}


def test_put_image_media_type_taken_from_the_manifest(ecr: Any, repo: str) -> None:
    image = build_image(oci=True)
    for blob in image.blobs:
        upload_layer(ecr, repo, blob)
    put = ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="oci")["image"]
    assert put["imageManifestMediaType"] == OCI_MANIFEST


def test_put_image_already_exists(ecr: Any, repo: str) -> None:
    image = build_image()
    push_ecr(ecr, repo, image, "v1")
    with raises("ImageAlreadyExistsException", image.digest):
        ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="v1")
    with raises("ImageAlreadyExistsException", image.digest):
        ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode())


def test_put_image_digest_does_not_match(ecr: Any, repo: str) -> None:
    image = build_image()
    for blob in image.blobs:
        upload_layer(ecr, repo, blob)
    wrong = sha256(b"something else")
    with raises("ImageDigestDoesNotMatchException", wrong):
        ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageDigest=wrong)
    # The right digest is accepted and the image is addressable by it.
    put = ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageDigest=image.digest,
                        imageTag="ok")["image"]
    assert put["imageId"] == {"imageDigest": image.digest, "imageTag": "ok"}


def test_put_image_layers_not_found(ecr: Any, repo: str) -> None:
    image = build_image()
    upload_layer(ecr, repo, image.config)
    upload_layer(ecr, repo, image.layers[0])
    missing = sha256(image.layers[1])
    with raises("LayersNotFoundException", missing):
        ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="v1")
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []


def test_put_image_index_with_missing_child(ecr: Any, repo: str) -> None:
    present, absent = build_image(oci=True), build_image(oci=True)
    push_ecr(ecr, repo, present)
    index = build_index([present, absent])
    with raises("ReferencedImagesNotFoundException", absent.digest):
        ecr.put_image(repositoryName=repo, imageManifest=index.decode(), imageTag="multi")
    push_ecr(ecr, repo, absent)
    put = ecr.put_image(repositoryName=repo, imageManifest=index.decode(), imageTag="multi")["image"]
    assert put["imageManifestMediaType"] == OCI_INDEX
    assert put["imageId"] == {"imageDigest": sha256(index), "imageTag": "multi"}


def test_put_image_invalid_manifests(ecr: Any, repo: str) -> None:
    with raises("InvalidParameterException", "imageManifest"):
        ecr.put_image(repositoryName=repo, imageManifest="{not json", imageTag="x")
    image = build_image()
    with raises("InvalidParameterException"):
        ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="x",
                      imageManifestMediaType="text/plain")
    # The declared type contradicts the manifest's own mediaType.
    with raises("InvalidParameterException"):
        ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="x",
                      imageManifestMediaType=OCI_MANIFEST)
    with raises("InvalidParameterException", "imageTag"):
        ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="-bad tag")


def test_put_image_repository_not_found(ecr: Any) -> None:
    name = unique_name("gone")
    with raises("RepositoryNotFoundException", name):
        ecr.put_image(repositoryName=name, imageManifest=build_image().manifest.decode(), imageTag="x")
    # ECR never creates a repository on its own push path.
    with raises("RepositoryNotFoundException"):
        ecr.describe_repositories(repositoryNames=[name])


# -- tag immutability -----------------------------------------------------------------------

def test_immutable_tags_on_put_image(ecr: Any, repo: str) -> None:
    first, second = build_image(), build_image()
    push_ecr(ecr, repo, first, "v1")
    ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
    with raises("ImageTagAlreadyExistsException", "v1"):
        push_ecr(ecr, repo, second, "v1")
    listed = ecr.list_images(repositoryName=repo)["imageIds"]
    assert (first.digest, "v1") in _ids(listed)
    assert ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"][0]["imageId"][
        "imageDigest"] == first.digest
    # New tags are fine, and so is the same image under the same tag again (ImageAlreadyExists, not a move).
    ecr.put_image(repositoryName=repo, imageManifest=second.manifest.decode(), imageTag="v2")
    with raises("ImageAlreadyExistsException"):
        ecr.put_image(repositoryName=repo, imageManifest=first.manifest.decode(), imageTag="v1")
    # Switching back to MUTABLE lets the tag move.
    ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="MUTABLE")
    ecr.put_image(repositoryName=repo, imageManifest=second.manifest.decode(), imageTag="v1")
    assert (second.digest, "v1") in _ids(ecr.list_images(repositoryName=repo)["imageIds"])


def test_immutable_tags_on_v2_manifest_put(ecr: Any, repo: str, v2: httpx.Client) -> None:
    first, second = build_image(), build_image()
    assert push_v2(v2, repo, first, "v1").status_code == 201
    ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
    refused = push_v2(v2, repo, second, "v1")
    row = TABLE[Kind.TAG_IMMUTABLE]
    assert refused.status_code == row.oci_status, refused.text
    error = refused.json()["errors"][0]
    assert error["code"] == row.oci_code
    assert "immutable" in error["message"]
    got = v2.get(f"/v2/{repo}/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert got.headers["Docker-Content-Digest"] == first.digest
    # Pushing by digest and re-putting the same manifest under the tag are both allowed.
    assert push_v2(v2, repo, second).status_code == 201
    assert push_v2(v2, repo, first, "v1").status_code == 201


@pytest.mark.parametrize(("mode", "filters", "mutable", "immutable"), [
    ("IMMUTABLE_WITH_EXCLUSION", ["latest", "dev-*"], ["latest", "dev-1", "dev-", "dev-a-b"],
     ["v1", "latest2", "xdev-1", "Dev-1"]),
    ("MUTABLE_WITH_EXCLUSION", ["release-*", "*-final"], ["v1", "release", "final"],
     ["release-1", "release-", "x-final", "release-x-final"]),
    ("IMMUTABLE_WITH_EXCLUSION", ["*"], ["anything", "v1"], []),
    ("MUTABLE_WITH_EXCLUSION", ["v*.*"], ["v1", "x1.0"], ["v1.0", "v.", "v1.2.3"]),
])
def test_mutability_exclusion_wildcards(ecr: Any, repo: str, v2: httpx.Client, mode: str, filters: list[str],
                                        mutable: list[str], immutable: list[str]) -> None:
    ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability=mode,
                                 imageTagMutabilityExclusionFilters=[
                                     {"filterType": "WILDCARD", "filter": f} for f in filters])
    first, second = build_image(), build_image()
    push_ecr(ecr, repo, first)
    push_ecr(ecr, repo, second)
    for tag in mutable + immutable:
        ecr.put_image(repositoryName=repo, imageManifest=first.manifest.decode(), imageTag=tag)
    for i, tag in enumerate(mutable):
        if i % 2:  # alternate the face that moves the tag
            assert v2.put(f"/v2/{repo}/manifests/{tag}", content=second.manifest,
                          headers={"Content-Type": second.media_type}).status_code == 201
        else:
            ecr.put_image(repositoryName=repo, imageManifest=second.manifest.decode(), imageTag=tag)
    for i, tag in enumerate(immutable):
        if i % 2:
            r = v2.put(f"/v2/{repo}/manifests/{tag}", content=second.manifest,
                       headers={"Content-Type": second.media_type})
            assert r.status_code == TABLE[Kind.TAG_IMMUTABLE].oci_status, (tag, r.text)
        else:
            with raises("ImageTagAlreadyExistsException", tag):
                ecr.put_image(repositoryName=repo, imageManifest=second.manifest.decode(), imageTag=tag)
    tags = {t: d for d, t in _ids(ecr.list_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageIds"])}
    assert {t for t, d in tags.items() if d == second.digest} == set(mutable)
    assert {t for t, d in tags.items() if d == first.digest} == set(immutable)


# -- ListImages -----------------------------------------------------------------------------

def test_list_images_tag_status_filter(ecr: Any, repo: str) -> None:
    tagged, multi, untagged = build_image(), build_image(), build_image()
    push_ecr(ecr, repo, tagged, "one")
    push_ecr(ecr, repo, multi, "two")
    ecr.put_image(repositoryName=repo, imageManifest=multi.manifest.decode(), imageTag="three")
    push_ecr(ecr, repo, untagged)
    everything = {(tagged.digest, "one"), (multi.digest, "two"), (multi.digest, "three"), (untagged.digest, None)}
    assert _ids(ecr.list_images(repositoryName=repo)["imageIds"]) == everything
    assert _ids(ecr.list_images(repositoryName=repo, filter={"tagStatus": "ANY"})["imageIds"]) == everything
    assert _ids(ecr.list_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageIds"]) == {
        (tagged.digest, "one"), (multi.digest, "two"), (multi.digest, "three")}
    assert _ids(ecr.list_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})["imageIds"]) == {
        (untagged.digest, None)}


def test_list_images_pagination(ecr: Any, repo: str) -> None:
    images = [build_image() for _ in range(5)]
    expected = set()
    for i, image in enumerate(images):
        tag = f"t{i}" if i < 4 else None
        push_ecr(ecr, repo, image, tag)
        expected.add((image.digest, tag))
    # One image carries three tags: a page must still hold at most maxResults entries.
    for tag in ("x1", "x2"):
        ecr.put_image(repositoryName=repo, imageManifest=images[0].manifest.decode(), imageTag=tag)
        expected.add((images[0].digest, tag))
    for size in (1, 2, 3):
        pages = _all_list_images(ecr, repo, maxResults=size)
        assert all(0 < len(p) <= size for p in pages), (size, [len(p) for p in pages])
        flat = [(i["imageDigest"], i.get("imageTag")) for p in pages for i in p]
        assert len(flat) == len(set(flat)), "an entry was listed twice"
        assert set(flat) == expected
    pages = _all_list_images(ecr, repo, maxResults=2, filter={"tagStatus": "UNTAGGED"})
    assert {(i["imageDigest"], i.get("imageTag")) for p in pages for i in p} == {(images[4].digest, None)}
    paginated = [i for p in ecr.get_paginator("list_images").paginate(
        repositoryName=repo, PaginationConfig={"PageSize": 2}) for i in p["imageIds"]]
    assert _ids(paginated) == expected


def test_list_images_errors(ecr: Any, repo: str) -> None:
    with raises("RepositoryNotFoundException"):
        ecr.list_images(repositoryName=unique_name("gone"))
    with raises("InvalidParameterException", "nextToken"):
        ecr.list_images(repositoryName=repo, nextToken="garbage")
    empty = ecr.list_images(repositoryName=repo)
    assert empty["imageIds"] == [] and "nextToken" not in empty


# -- DescribeImages -------------------------------------------------------------------------

def test_describe_images_details(ecr: Any, repo: str, v2: httpx.Client) -> None:
    layers = [b"a" * 1000, b"b" * 2345, b"c" * 17]
    docker = build_image(layers)
    oci = build_image(oci=True)
    artifact = build_image([b"payload"], artifact_type="application/vnd.example.sbom+json", subject=oci)
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=2)
    push_ecr(ecr, repo, docker, "docker")
    push_ecr(ecr, repo, oci, "oci")
    push_ecr(ecr, repo, artifact)
    index = build_index([docker, oci])
    ecr.put_image(repositoryName=repo, imageManifest=index.decode(), imageTag="index")
    after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)

    details = {d["imageDigest"]: d for d in ecr.describe_images(repositoryName=repo)["imageDetails"]}
    assert set(details) == {docker.digest, oci.digest, artifact.digest, sha256(index)}
    d = details[docker.digest]
    assert d["registryId"] == ACCOUNT and d["repositoryName"] == repo
    assert d["imageTags"] == ["docker"]
    assert d["imageSizeInBytes"] == 1000 + 2345 + 17
    assert before <= d["imagePushedAt"] <= after
    assert d["imageManifestMediaType"] == DOCKER_MANIFEST
    assert d["artifactMediaType"] == DOCKER_CONFIG
    assert "lastRecordedPullTime" not in d
    o = details[oci.digest]
    assert o["imageManifestMediaType"] == OCI_MANIFEST
    assert o["artifactMediaType"] == OCI_CONFIG
    assert o["imageSizeInBytes"] == oci.layer_bytes
    a = details[artifact.digest]
    assert "imageTags" not in a
    assert a["artifactMediaType"] == "application/vnd.example.sbom+json"
    assert a["imageSizeInBytes"] == len(b"payload")
    assert a.get("subjectManifestDigest") == oci.digest
    i = details[sha256(index)]
    assert i["imageManifestMediaType"] == OCI_INDEX
    assert i["imageTags"] == ["index"]


def test_describe_images_last_recorded_pull_time(ecr: Any, repo: str, v2: httpx.Client) -> None:
    pulled_v2, pulled_ecr, never = build_image(), build_image(), build_image()
    push_ecr(ecr, repo, pulled_v2, "v2")
    push_ecr(ecr, repo, pulled_ecr, "ecr")
    push_ecr(ecr, repo, never, "never")
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=2)
    # A HEAD is not a pull.
    assert v2.head(f"/v2/{repo}/manifests/v2", headers={"Accept": DOCKER_MANIFEST}).status_code == 200
    described = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v2"}])["imageDetails"][0]
    assert "lastRecordedPullTime" not in described
    assert v2.get(f"/v2/{repo}/manifests/v2", headers={"Accept": DOCKER_MANIFEST}).status_code == 200
    ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "ecr"}])
    after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
    details = {d["imageDigest"]: d for d in ecr.describe_images(repositoryName=repo)["imageDetails"]}
    for image in (pulled_v2, pulled_ecr):
        pulled = details[image.digest]["lastRecordedPullTime"]
        assert before <= pulled <= after
        assert pulled >= details[image.digest]["imagePushedAt"]
    assert "lastRecordedPullTime" not in details[never.digest]


def test_describe_images_by_id_and_filter(ecr: Any, repo: str) -> None:
    tagged, untagged = build_image(), build_image()
    push_ecr(ecr, repo, tagged, "v1")
    ecr.put_image(repositoryName=repo, imageManifest=tagged.manifest.decode(), imageTag="v2")
    push_ecr(ecr, repo, untagged)
    by_tag = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v2"}])["imageDetails"]
    assert [d["imageDigest"] for d in by_tag] == [tagged.digest]
    assert by_tag[0]["imageTags"] == ["v1", "v2"]
    both = ecr.describe_images(repositoryName=repo, imageIds=[
        {"imageDigest": untagged.digest}, {"imageTag": "v1"}, {"imageTag": "v2"},
        {"imageDigest": tagged.digest, "imageTag": "v1"}])["imageDetails"]
    assert sorted(d["imageDigest"] for d in both) == sorted([tagged.digest, untagged.digest])
    assert [d["imageDigest"] for d in ecr.describe_images(
        repositoryName=repo, filter={"tagStatus": "UNTAGGED"})["imageDetails"]] == [untagged.digest]
    assert [d["imageDigest"] for d in ecr.describe_images(
        repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageDetails"]] == [tagged.digest]
    with raises("ImageNotFoundException", "nope"):
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "nope"}])
    with raises("ImageNotFoundException"):
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": sha256(b"nothing")}])
    with raises("InvalidParameterException"):
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v1"}], maxResults=5)
    with raises("RepositoryNotFoundException"):
        ecr.describe_images(repositoryName=unique_name("gone"))


def test_describe_images_pagination(ecr: Any, repo: str) -> None:
    digests = set()
    for i in range(5):
        image = build_image()
        push_ecr(ecr, repo, image, f"t{i}" if i % 2 else None)
        digests.add(image.digest)
    seen: list[str] = []
    kwargs: dict[str, Any] = {"maxResults": 2}
    while True:
        page = ecr.describe_images(repositoryName=repo, **kwargs)
        assert 0 < len(page["imageDetails"]) <= 2
        seen.extend(d["imageDigest"] for d in page["imageDetails"])
        if "nextToken" not in page:
            break
        kwargs["nextToken"] = page["nextToken"]
    assert sorted(seen) == sorted(digests)
    untagged = [d for p in ecr.get_paginator("describe_images").paginate(
        repositoryName=repo, filter={"tagStatus": "UNTAGGED"}, PaginationConfig={"PageSize": 1})
        for d in p["imageDetails"]]
    assert len(untagged) == 3 and all("imageTags" not in d for d in untagged)


# -- BatchGetImage --------------------------------------------------------------------------

def test_batch_get_image(ecr: Any, repo: str) -> None:
    docker, oci = build_image(), build_image(oci=True)
    push_ecr(ecr, repo, docker, "docker")
    push_ecr(ecr, repo, oci, "oci")
    out = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "docker"}, {"imageDigest": oci.digest}])
    assert out["failures"] == []
    got = {i["imageId"]["imageDigest"]: i for i in out["images"]}
    assert got[docker.digest]["imageId"] == {"imageDigest": docker.digest, "imageTag": "docker"}
    assert got[docker.digest]["imageManifest"] == docker.manifest.decode()
    assert got[docker.digest]["imageManifestMediaType"] == DOCKER_MANIFEST
    assert got[docker.digest]["registryId"] == ACCOUNT and got[docker.digest]["repositoryName"] == repo
    assert got[oci.digest]["imageId"] == {"imageDigest": oci.digest}
    assert got[oci.digest]["imageManifest"] == oci.manifest.decode()
    assert got[oci.digest]["imageManifestMediaType"] == OCI_MANIFEST


def test_batch_get_image_accepted_media_types(ecr: Any, repo: str) -> None:
    docker, oci = build_image(), build_image(oci=True)
    push_ecr(ecr, repo, docker, "docker")
    push_ecr(ecr, repo, oci, "oci")
    ids = [{"imageTag": "docker"}, {"imageTag": "oci"}]
    out = ecr.batch_get_image(repositoryName=repo, imageIds=ids, acceptedMediaTypes=[OCI_MANIFEST])
    assert [i["imageId"]["imageDigest"] for i in out["images"]] == [oci.digest]
    assert [(f["imageId"], f["failureCode"]) for f in out["failures"]] == [({"imageTag": "docker"}, "ImageNotFound")]
    out = ecr.batch_get_image(repositoryName=repo, imageIds=ids,
                              acceptedMediaTypes=[OCI_MANIFEST, DOCKER_MANIFEST, DOCKER_LIST])
    assert len(out["images"]) == 2 and out["failures"] == []


def test_batch_get_image_failures(ecr: Any, repo: str) -> None:
    image = build_image()
    push_ecr(ecr, repo, image, "v1")
    other = sha256(b"other")
    out = ecr.batch_get_image(repositoryName=repo, imageIds=[
        {"imageTag": "v1"}, {"imageTag": "missing"}, {"imageDigest": other}, {"imageDigest": "sha256:xyz"},
        {"imageDigest": other, "imageTag": "v1"}, {}])
    assert [i["imageId"]["imageDigest"] for i in out["images"]] == [image.digest]
    codes = {json.dumps(f["imageId"], sort_keys=True): f["failureCode"] for f in out["failures"]}
    assert codes == {
        json.dumps({"imageTag": "missing"}): "ImageNotFound",
        json.dumps({"imageDigest": other}): "ImageNotFound",
        json.dumps({"imageDigest": "sha256:xyz"}): "InvalidImageDigest",
        json.dumps({"imageDigest": other, "imageTag": "v1"}, sort_keys=True): "ImageTagDoesNotMatchDigest",
        json.dumps({}): "MissingDigestAndTag",
    }
    assert all(f["failureReason"] for f in out["failures"])
    with raises("RepositoryNotFoundException"):
        ecr.batch_get_image(repositoryName=unique_name("gone"), imageIds=[{"imageTag": "v1"}])


# -- BatchDeleteImage -----------------------------------------------------------------------

def test_batch_delete_image_by_tag(ecr: Any, repo: str) -> None:
    image = build_image()
    push_ecr(ecr, repo, image, "a")
    ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="b")
    out = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "a"}])
    assert out["imageIds"] == [{"imageDigest": image.digest, "imageTag": "a"}] and out["failures"] == []
    # The image stays while it has another tag...
    assert _ids(ecr.list_images(repositoryName=repo)["imageIds"]) == {(image.digest, "b")}
    # ...and goes with its last tag, as on ECR.
    out = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "b"}])
    assert out["imageIds"] == [{"imageDigest": image.digest, "imageTag": "b"}]
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []
    with raises("ImageNotFoundException"):
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": image.digest}])


def test_batch_delete_image_by_digest(ecr: Any, repo: str, v2: httpx.Client) -> None:
    image, keep = build_image(), build_image()
    push_ecr(ecr, repo, image, "a")
    ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="b")
    push_ecr(ecr, repo, keep, "keep")
    out = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": image.digest}])
    assert out["failures"] == []
    assert {i["imageDigest"] for i in out["imageIds"]} == {image.digest}
    assert _ids(ecr.list_images(repositoryName=repo)["imageIds"]) == {(keep.digest, "keep")}
    assert v2.get(f"/v2/{repo}/manifests/a").status_code == 404
    assert v2.get(f"/v2/{repo}/manifests/{image.digest}").status_code == 404


def test_batch_delete_image_failures(ecr: Any, repo: str) -> None:
    child = build_image(oci=True)
    push_ecr(ecr, repo, child, "child")
    index = build_index([child])
    ecr.put_image(repositoryName=repo, imageManifest=index.decode(), imageTag="index")
    out = ecr.batch_delete_image(repositoryName=repo, imageIds=[
        {"imageTag": "missing"}, {"imageDigest": sha256(b"x")}, {"imageDigest": "md5:zz"},
        {"imageDigest": child.digest}])
    codes = {json.dumps(f["imageId"]): f["failureCode"] for f in out["failures"]}
    assert codes == {
        json.dumps({"imageTag": "missing"}): "ImageNotFound",
        json.dumps({"imageDigest": sha256(b"x")}): "ImageNotFound",
        json.dumps({"imageDigest": "md5:zz"}): "InvalidImageDigest",
        json.dumps({"imageDigest": child.digest}): "ImageReferencedByManifestList",
    }
    assert out["imageIds"] == []
    # Untagging a child of an index keeps the image: the index still needs it.
    out = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "child"}])
    assert out["imageIds"] == [{"imageDigest": child.digest, "imageTag": "child"}]
    assert _ids(ecr.list_images(repositoryName=repo)["imageIds"]) == {(sha256(index), "index"), (child.digest, None)}
    # Once the index is gone the child can go too.
    ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": sha256(index)}])
    out = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": child.digest}])
    assert out["imageIds"] == [{"imageDigest": child.digest}] and out["failures"] == []
    with raises("RepositoryNotFoundException"):
        ecr.batch_delete_image(repositoryName=unique_name("gone"), imageIds=[{"imageTag": "x"}])


# -- ListImageReferrers ---------------------------------------------------------------------

def _artifact(subject: Built, artifact_type: str, payload: bytes) -> Built:
    return build_image([payload], artifact_type=artifact_type, subject=subject)


def test_list_image_referrers(ecr: Any, repo: str) -> None:
    subject = build_image(oci=True)
    push_ecr(ecr, repo, subject, "app")
    sbom = _artifact(subject, "application/vnd.example.sbom+json", b"sbom")
    sig = _artifact(subject, "application/vnd.example.signature", b"sig")
    unrelated = build_image(oci=True)
    for image in (sbom, sig, unrelated):
        push_ecr(ecr, repo, image)
    out = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest})
    got = {r["digest"]: r for r in out["referrers"]}
    assert set(got) == {sbom.digest, sig.digest}
    assert got[sbom.digest]["mediaType"] == OCI_MANIFEST
    assert got[sbom.digest]["artifactType"] == "application/vnd.example.sbom+json"
    assert got[sbom.digest]["size"] == len(sbom.manifest)
    assert got[sbom.digest]["artifactStatus"] == "ACTIVE"
    filtered = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest},
                                        filter={"artifactTypes": ["application/vnd.example.signature"]})
    assert [r["digest"] for r in filtered["referrers"]] == [sig.digest]
    # Pagination with maxResults 1.
    first = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest}, maxResults=1)
    assert len(first["referrers"]) == 1 and first.get("nextToken")
    second = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest},
                                      maxResults=1, nextToken=first["nextToken"])
    assert {first["referrers"][0]["digest"], second["referrers"][0]["digest"]} == {sbom.digest, sig.digest}
    assert "nextToken" not in second
    none = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": unrelated.digest})
    assert none["referrers"] == []


def test_list_image_referrers_before_the_subject_and_errors(ecr: Any, repo: str) -> None:
    subject = build_image(oci=True)  # never pushed: referrers may arrive first
    empty = b"{}"
    upload_layer(ecr, repo, empty)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.note",
           "config": {"mediaType": OCI_EMPTY, "digest": sha256(empty), "size": 2}, "layers": [],
           "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": len(subject.manifest)}}
    note = json.dumps(doc).encode()
    ecr.put_image(repositoryName=repo, imageManifest=note.decode())
    out = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest})
    assert [(r["digest"], r["artifactType"]) for r in out["referrers"]] == [
        (sha256(note), "application/vnd.example.note")]
    with raises("InvalidParameterException", "imageDigest"):
        ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": "not-a-digest"})
    with raises("RepositoryNotFoundException"):
        ecr.list_image_referrers(repositoryName=unique_name("gone"), subjectId={"imageDigest": subject.digest})


def test_image_pushed_at_is_recent(ecr: Any, repo: str) -> None:
    push_ecr(ecr, repo, build_image(), "now")
    detail = ecr.describe_images(repositoryName=repo)["imageDetails"][0]
    assert abs(detail["imagePushedAt"].timestamp() - time.time()) < 30
