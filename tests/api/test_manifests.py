"""Manifests: push, pull, HEAD and delete for every supported kind, and the invalid cases."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.api.helpers import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCI_ND_LAYER,
    assert_oci_error,
    descriptor,
    digest,
    encode,
    image_manifest,
    push_artifact,
    push_blob,
    push_image,
    push_index,
    put_manifest,
    random_bytes,
    unique_repo,
)

MAX_MANIFEST = 4 * 1024 * 1024


def _assert_served(client: httpx.Client, repo: str, ref: str, body: bytes, media_type: str) -> None:
    """GET returns the exact bytes pushed; HEAD the same headers with no body."""
    d = digest(body)
    r = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
    assert r.status_code == 200, r.text
    assert r.content == body
    assert digest(r.content) == r.headers["docker-content-digest"] == d
    assert r.headers["content-type"] == media_type
    assert r.headers["content-length"] == str(len(body))
    h = client.head(f"/v2/{repo}/manifests/{ref}")
    assert h.status_code == 200
    assert h.content == b""
    assert h.headers["docker-content-digest"] == d
    assert h.headers["content-length"] == str(len(body))
    assert h.headers["content-type"] == media_type


def _assert_not_stored(client: httpx.Client, repo: str, *refs: str) -> None:
    for ref in refs:
        r = client.get(f"/v2/{repo}/manifests/{ref}")
        assert r.status_code == 404, (ref, r.status_code)


# -- kinds of manifest ----------------------------------------------------------------------

def test_oci_image_manifest_by_tag(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, "v1", layers=2)
    _assert_served(client, repo, "v1", image.body, OCI_MANIFEST)
    _assert_served(client, repo, image.digest, image.body, OCI_MANIFEST)


def test_put_response_headers(client: httpx.Client) -> None:
    repo = unique_repo()
    config, layer = random_bytes(40), random_bytes(80)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    body = image_manifest(config, [layer])
    r = put_manifest(client, repo, "latest", body)
    assert r.status_code == 201
    assert r.headers["docker-content-digest"] == digest(body)
    assert "oci-subject" not in r.headers
    # Location is a pullable manifest URL.
    got = client.get(r.headers["location"])
    assert got.status_code == 200
    assert got.content == body


def test_oci_image_manifest_by_digest(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, None)
    r = put_manifest(client, repo, image.digest, image.body)
    assert r.status_code == 201
    assert r.headers["location"].endswith(image.digest)
    _assert_served(client, repo, image.digest, image.body, OCI_MANIFEST)
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] in ([], None)


def test_exact_bytes_are_stored(client: httpx.Client) -> None:
    """Odd whitespace, key order and escapes survive: the registry never re-serialises."""
    repo = unique_repo()
    config, layer = random_bytes(10), random_bytes(20)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    body = (
        '{  "layers":[ ' + json.dumps(descriptor(OCI_LAYER, layer)) + ' ],\n\t"schemaVersion" : 2,'
        '"config":' + json.dumps(descriptor(OCI_CONFIG, config)) + ','
        '"annotations":{"\\u00e9t\\u00e9":"caf\\u00e9 \u2603", "org.example.z":"1"},'
        '"mediaType":"' + OCI_MANIFEST + '"}   \n\n'
    ).encode()
    r = put_manifest(client, repo, "odd", body)
    assert r.status_code == 201, r.text
    _assert_served(client, repo, "odd", body, OCI_MANIFEST)


def test_manifest_without_media_type_field(client: httpx.Client) -> None:
    repo = unique_repo()
    config = random_bytes(10)
    push_blob(client, repo, config)
    body = encode({"schemaVersion": 2, "config": descriptor(OCI_CONFIG, config), "layers": []})
    r = put_manifest(client, repo, "nomt", body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    _assert_served(client, repo, "nomt", body, OCI_MANIFEST)


def test_content_type_with_parameters_is_accepted(client: httpx.Client) -> None:
    repo = unique_repo()
    config = random_bytes(10)
    push_blob(client, repo, config)
    body = image_manifest(config, [])
    r = put_manifest(client, repo, "params", body, f"{OCI_MANIFEST}; charset=utf-8")
    assert r.status_code == 201, r.text
    _assert_served(client, repo, "params", body, OCI_MANIFEST)


def test_image_without_layers(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, "no-layers", layers=0)
    _assert_served(client, repo, "no-layers", image.body, OCI_MANIFEST)


def test_oci_index(client: httpx.Client) -> None:
    repo = unique_repo()
    children = [push_image(client, repo, None), push_image(client, repo, None)]
    index = push_index(client, repo, children, "multi")
    _assert_served(client, repo, "multi", index.body, OCI_INDEX)
    _assert_served(client, repo, index.digest, index.body, OCI_INDEX)
    for child in children:
        _assert_served(client, repo, child.digest, child.body, OCI_MANIFEST)


def test_nested_and_empty_index(client: httpx.Client) -> None:
    repo = unique_repo()
    inner = push_index(client, repo, [push_image(client, repo, None)])
    outer = push_index(client, repo, [inner], "index-of-index")
    _assert_served(client, repo, "index-of-index", outer.body, OCI_INDEX)
    empty = push_index(client, repo, [], "empty-index")
    _assert_served(client, repo, "empty-index", empty.body, OCI_INDEX)


def test_docker_schema2_manifest(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, "docker", media_type=DOCKER_MANIFEST)
    _assert_served(client, repo, "docker", image.body, DOCKER_MANIFEST)


def test_docker_manifest_list(client: httpx.Client) -> None:
    repo = unique_repo()
    children = [push_image(client, repo, None, media_type=DOCKER_MANIFEST) for _ in range(2)]
    index = push_index(client, repo, children, "list", media_type=DOCKER_LIST)
    _assert_served(client, repo, "list", index.body, DOCKER_LIST)


def test_artifact_with_artifact_type_and_subject(client: httpx.Client) -> None:
    repo = unique_repo()
    subject = push_image(client, repo, "subject")
    artifact = push_artifact(client, repo, subject.descriptor(), "application/vnd.example.sbom.v1",
                             annotations={"org.example.k": "v"}, tag="sbom")
    _assert_served(client, repo, "sbom", artifact.body, OCI_MANIFEST)


def test_artifact_subject_header_on_201(client: httpx.Client) -> None:
    repo = unique_repo()
    subject = push_image(client, repo, None)
    layer = random_bytes(16)
    push_blob(client, repo, EMPTY_JSON)
    push_blob(client, repo, layer)
    body = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x.sig",
                   "config": descriptor(OCI_EMPTY, EMPTY_JSON),
                   "layers": [descriptor("application/x.sig", layer)],
                   "subject": subject.descriptor()})
    r = put_manifest(client, repo, digest(body), body)
    assert r.status_code == 201, r.text
    assert r.headers["oci-subject"] == subject.digest
    assert r.headers["docker-content-digest"] == digest(body)


def test_artifact_whose_subject_does_not_exist_is_accepted(client: httpx.Client) -> None:
    repo = unique_repo()
    ghost = {"mediaType": OCI_MANIFEST, "digest": digest(b"missing content"), "size": 123}
    artifact = push_artifact(client, repo, ghost, "application/vnd.example.sig")
    _assert_served(client, repo, artifact.digest, artifact.body, OCI_MANIFEST)


def test_index_with_subject(client: httpx.Client) -> None:
    repo = unique_repo()
    subject = push_index(client, repo, [push_image(client, repo, None)])
    child = push_image(client, repo, None)
    body = encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": "application/x.list",
                   "manifests": [child.descriptor()], "subject": subject.descriptor()})
    r = put_manifest(client, repo, "indexed-artifact", body, OCI_INDEX)
    assert r.status_code == 201, r.text
    assert r.headers["oci-subject"] == subject.digest


def test_non_distributable_layers_need_not_be_pushed(client: httpx.Client) -> None:
    repo = unique_repo()
    config, layer = random_bytes(10), random_bytes(20)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    foreign = random_bytes(30)
    body = encode({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_ND_LAYER, foreign, urls=["https://example.com/blob"]),
                   descriptor(OCI_LAYER, layer)]})
    r = put_manifest(client, repo, "nd", body)
    assert r.status_code == 201, r.text


def test_custom_fields_and_data_field_are_preserved(client: httpx.Client) -> None:
    repo = unique_repo()
    config = b'{"architecture":"amd64","os":"linux"}'
    push_blob(client, repo, config)
    body = encode({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config, data=base64.b64encode(config).decode()),
        "layers": [], "x-custom-field": {"nested": [1, 2, 3]}})
    r = put_manifest(client, repo, "custom", body)
    assert r.status_code == 201, r.text
    _assert_served(client, repo, "custom", body, OCI_MANIFEST)


def test_sha512_manifest_reference(client: httpx.Client) -> None:
    repo = unique_repo()
    config = random_bytes(10)
    push_blob(client, repo, config)
    body = image_manifest(config, [])
    d512 = digest(body, "sha512")
    r = put_manifest(client, repo, d512, body)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d512
    got = client.get(f"/v2/{repo}/manifests/{d512}")
    assert got.status_code == 200
    assert got.content == body
    assert got.headers["docker-content-digest"] == d512
    assert client.delete(f"/v2/{repo}/manifests/{d512}").status_code == 202
    assert client.get(f"/v2/{repo}/manifests/{d512}").status_code == 404


def test_manifest_of_exactly_4_mib_is_accepted(client: httpx.Client) -> None:
    repo = unique_repo()
    config = random_bytes(10)
    push_blob(client, repo, config)
    skeleton = image_manifest(config, [], annotations={"pad": ""})
    pad = MAX_MANIFEST - len(skeleton)
    body = image_manifest(config, [], annotations={"pad": "A" * pad})
    assert len(body) == MAX_MANIFEST
    r = put_manifest(client, repo, "big", body)
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{repo}/manifests/big").content == body


@pytest.mark.parametrize("chunked", [False, True])
def test_manifest_over_4_mib_is_413_and_not_stored(client: httpx.Client, chunked: bool) -> None:
    repo = unique_repo()
    config = random_bytes(10)
    skeleton = image_manifest(config, [], annotations={"pad": ""})
    body = image_manifest(config, [], annotations={"pad": "A" * (MAX_MANIFEST + 1 - len(skeleton))})
    assert len(body) == MAX_MANIFEST + 1
    content = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    r = client.put(f"/v2/{repo}/manifests/huge", content=content, headers={"Content-Type": OCI_MANIFEST})
    assert_oci_error(r, 413)
    # Nothing was stored: not the manifest, not even the repository.
    assert_oci_error(client.get(f"/v2/{repo}/manifests/huge"), 404)
    assert_oci_error(client.get(f"/v2/{repo}/manifests/{digest(body)}"), 404)
    assert_oci_error(client.get(f"/v2/{repo}/tags/list"), 404, "NAME_UNKNOWN")


# -- tags and overwrites --------------------------------------------------------------------

def test_tag_moves_to_the_newest_manifest(client: httpx.Client) -> None:
    repo = unique_repo()
    first = push_image(client, repo, "latest")
    second = push_image(client, repo, "latest")
    _assert_served(client, repo, "latest", second.body, OCI_MANIFEST)
    _assert_served(client, repo, first.digest, first.body, OCI_MANIFEST)


def test_same_manifest_under_several_tags(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, "one")
    for tag in ("two", "three"):
        assert put_manifest(client, repo, tag, image.body).status_code == 201
    for tag in ("one", "two", "three"):
        _assert_served(client, repo, tag, image.body, OCI_MANIFEST)


def test_longest_tag_is_accepted(client: httpx.Client) -> None:
    repo = unique_repo()
    tag = "a" * 128
    image = push_image(client, repo, tag)
    _assert_served(client, repo, tag, image.body, OCI_MANIFEST)


# -- delete ---------------------------------------------------------------------------------

def test_delete_tag(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, "keep")
    assert put_manifest(client, repo, "drop", image.body).status_code == 201
    r = client.delete(f"/v2/{repo}/manifests/drop")
    assert r.status_code == 202
    assert_oci_error(client.get(f"/v2/{repo}/manifests/drop"), 404, "MANIFEST_UNKNOWN")
    assert client.head(f"/v2/{repo}/manifests/drop").status_code == 404
    _assert_served(client, repo, "keep", image.body, OCI_MANIFEST)
    _assert_served(client, repo, image.digest, image.body, OCI_MANIFEST)
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["keep"]
    assert_oci_error(client.delete(f"/v2/{repo}/manifests/drop"), 404, "MANIFEST_UNKNOWN")


def test_delete_manifest_by_digest_removes_its_tags(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, "a")
    assert put_manifest(client, repo, "b", image.body).status_code == 201
    other = push_image(client, repo, "c")
    r = client.delete(f"/v2/{repo}/manifests/{image.digest}")
    assert r.status_code == 202
    for ref in (image.digest, "a", "b"):
        assert_oci_error(client.get(f"/v2/{repo}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
        assert client.head(f"/v2/{repo}/manifests/{ref}").status_code == 404
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["c"]
    _assert_served(client, repo, "c", other.body, OCI_MANIFEST)
    assert_oci_error(client.delete(f"/v2/{repo}/manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")


def test_deleted_manifest_can_be_pushed_again(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, "again")
    assert client.delete(f"/v2/{repo}/manifests/{image.digest}").status_code == 202
    assert put_manifest(client, repo, "again", image.body).status_code == 201
    _assert_served(client, repo, "again", image.body, OCI_MANIFEST)


def test_delete_in_unknown_repository(client: httpx.Client) -> None:
    repo = unique_repo("nowhere")
    assert_oci_error(client.delete(f"/v2/{repo}/manifests/latest"), 404, "NAME_UNKNOWN")
    assert_oci_error(client.delete(f"/v2/{repo}/manifests/{digest(b'x')}"), 404, "NAME_UNKNOWN")


# -- unknown manifests ----------------------------------------------------------------------

def test_unknown_manifest(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, "present")
    for ref in ("absent", digest(random_bytes(1024))):
        assert_oci_error(client.get(f"/v2/{repo}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
        h = client.head(f"/v2/{repo}/manifests/{ref}")
        assert h.status_code == 404
        assert h.content == b""
    other = unique_repo()
    push_blob(client, other, b"x")
    assert_oci_error(client.get(f"/v2/{other}/manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")


def test_pull_of_a_reference_no_tag_can_have_is_404(client: httpx.Client) -> None:
    """The official OCI conformance suite pulls ".INVALID_MANIFEST_NAME" and expects 404, and its
    delete helper expects GET .../manifests/<ref> (sent literally, %3Cref%3E) to be 404 too."""
    repo = unique_repo()
    push_image(client, repo, "present")
    for ref in (".INVALID_MANIFEST_NAME", "%3Cref%3E", "-dash", "a" * 129):
        assert_oci_error(client.get(f"/v2/{repo}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
        h = client.head(f"/v2/{repo}/manifests/{ref}")
        assert h.status_code == 404
        assert h.content == b""
    # The repository is still checked first, and a malformed digest is still DIGEST_INVALID.
    assert_oci_error(client.get(f"/v2/{unique_repo('nowhere')}/manifests/.x"), 404, "NAME_UNKNOWN")
    assert_oci_error(client.get(f"/v2/{repo}/manifests/sha256:totallywrong"), 400, "DIGEST_INVALID")


def test_manifest_in_unknown_repository(client: httpx.Client) -> None:
    repo = unique_repo("nowhere")
    assert_oci_error(client.get(f"/v2/{repo}/manifests/latest"), 404, "NAME_UNKNOWN")
    assert client.head(f"/v2/{repo}/manifests/latest").status_code == 404


# -- rejected pushes ------------------------------------------------------------------------

def test_missing_layer_is_manifest_blob_unknown(client: httpx.Client) -> None:
    repo = unique_repo()
    config, layer = random_bytes(10), random_bytes(20)
    push_blob(client, repo, config)
    body = image_manifest(config, [layer])
    r = put_manifest(client, repo, "broken", body)
    assert_oci_error(r, (400, 404), "MANIFEST_BLOB_UNKNOWN")
    _assert_not_stored(client, repo, "broken", digest(body))


def test_missing_config_is_manifest_blob_unknown(client: httpx.Client) -> None:
    repo = unique_repo()
    config, layer = random_bytes(10), random_bytes(20)
    push_blob(client, repo, layer)
    body = image_manifest(config, [layer])
    assert_oci_error(put_manifest(client, repo, "broken", body), (400, 404), "MANIFEST_BLOB_UNKNOWN")
    _assert_not_stored(client, repo, "broken", digest(body))


def test_blob_of_another_repository_does_not_satisfy_a_manifest(client: httpx.Client) -> None:
    repo, other = unique_repo(), unique_repo()
    config = random_bytes(10)
    push_blob(client, other, config)
    push_blob(client, repo, b"unrelated")
    body = image_manifest(config, [])
    assert_oci_error(put_manifest(client, repo, "x", body), (400, 404), "MANIFEST_BLOB_UNKNOWN")


def test_index_with_missing_child_is_manifest_blob_unknown(client: httpx.Client) -> None:
    repo = unique_repo()
    present = push_image(client, repo, None)
    ghost = {"mediaType": OCI_MANIFEST, "digest": digest(random_bytes(50)), "size": 50}
    body = encode({"schemaVersion": 2, "mediaType": OCI_INDEX,
                   "manifests": [present.descriptor(), ghost]})
    assert_oci_error(put_manifest(client, repo, "idx", body, OCI_INDEX), (400, 404), "MANIFEST_BLOB_UNKNOWN")
    _assert_not_stored(client, repo, "idx", digest(body))


def test_both_manifests_and_layers_is_invalid(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, None)
    config = random_bytes(10)
    push_blob(client, repo, config)
    body = encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [image.descriptor()],
                   "config": descriptor(OCI_CONFIG, config), "layers": []})
    for media_type in (OCI_INDEX, OCI_MANIFEST):
        doc = json.loads(body)
        doc["mediaType"] = media_type
        b = encode(doc)
        assert_oci_error(put_manifest(client, repo, "both", b, media_type), 400, "MANIFEST_INVALID")
        _assert_not_stored(client, repo, "both", digest(b))


@pytest.mark.parametrize(("declared", "header"), [
    (OCI_MANIFEST, OCI_INDEX),
    (OCI_MANIFEST, DOCKER_MANIFEST),
    (DOCKER_MANIFEST, OCI_MANIFEST),
])
def test_media_type_contradicting_content_type_is_invalid(client: httpx.Client, declared: str,
                                                          header: str) -> None:
    repo = unique_repo()
    config = random_bytes(10)
    push_blob(client, repo, config)
    body = image_manifest(config, [], media_type=declared)
    assert_oci_error(put_manifest(client, repo, "mismatch", body, header), 400, "MANIFEST_INVALID")
    _assert_not_stored(client, repo, "mismatch")


@pytest.mark.parametrize("body", [
    b"",
    b"not json",
    b"[1, 2, 3]",
    b'{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}',
    b'{"schemaVersion": 3, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",'
    b' "config": {"mediaType": "x", "digest": "sha256:abc", "size": 1}, "layers": []}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",'
    b' "config": {"mediaType": "x", "digest": "sha256:' + b"a" * 64 + b'", "size": -1}, "layers": []}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": {}}',
    b'{"schemaVersion": 2, "mediaType": "text/plain", "layers": []}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [],'
    b' "subject": {"mediaType": "x", "digest": "sha256:../..", "size": 1}}',
], ids=["empty", "not-json", "array", "schema1", "schema3", "no-config", "short-digest", "negative-size",
        "manifests-not-list", "unknown-media-type", "bad-subject"])
def test_malformed_manifest_is_invalid(client: httpx.Client, body: bytes) -> None:
    repo = unique_repo()
    push_blob(client, repo, b"x")
    r = put_manifest(client, repo, "bad", body, None)
    assert_oci_error(r, 400, "MANIFEST_INVALID")
    _assert_not_stored(client, repo, "bad")


def test_put_by_digest_with_other_bytes_is_digest_invalid(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, None)
    altered = image.body + b"  "  # the same document, other bytes: another digest
    r = put_manifest(client, repo, image.digest, altered)
    assert_oci_error(r, 400, "DIGEST_INVALID")
    _assert_not_stored(client, repo, digest(altered))
    # The manifest genuinely stored under that digest is untouched.
    _assert_served(client, repo, image.digest, image.body, OCI_MANIFEST)
    fresh = unique_repo()
    config = random_bytes(10)
    push_blob(client, fresh, config)
    body = image_manifest(config, [])
    assert_oci_error(put_manifest(client, fresh, digest(body + b"\n"), body), 400, "DIGEST_INVALID")
    _assert_not_stored(client, fresh, digest(body), digest(body + b"\n"))


def test_put_with_malformed_digest_reference(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, None)
    r = put_manifest(client, repo, "sha256:totallywrong", image.body)
    assert_oci_error(r, 400, "DIGEST_INVALID")
    assert_oci_error(client.get(f"/v2/{repo}/manifests/sha256:baddigeststring"), (400, 404))
