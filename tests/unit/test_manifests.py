import json
from typing import Any

import pytest

from cargohold.domain.manifests import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
    parse_manifest,
)
from cargohold.errors import Kind, RegistryError

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def desc(digest: str, media_type: str = "application/vnd.oci.image.layer.v1.tar+gzip", size: int = 10,
         **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def image(**extra: Any) -> dict[str, Any]:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": desc(D1, "application/vnd.oci.image.config.v1+json", 5), "layers": [desc(D2, size=7)]}
    doc.update(extra)
    return doc


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_oci_image_manifest() -> None:
    parsed = parse_manifest(raw(image()), OCI_MANIFEST)
    assert parsed.media_type == OCI_MANIFEST
    assert parsed.required_blobs() == [D1, D2]
    assert parsed.required_manifests() == []
    assert parsed.layer_bytes() == 7
    assert parsed.artifact_type == "application/vnd.oci.image.config.v1+json"


def test_artifact_with_subject() -> None:
    doc = image(artifactType="application/vnd.example.sbom", subject=desc(D3, OCI_MANIFEST, 100))
    parsed = parse_manifest(raw(doc), OCI_MANIFEST)
    assert parsed.subject is not None and parsed.subject.digest == D3
    assert parsed.artifact_type == "application/vnd.example.sbom"


def test_index_children_are_manifests() -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX,
           "manifests": [desc(D1, OCI_MANIFEST, platform={"os": "linux", "architecture": "amd64"}),
                         desc(D2, OCI_MANIFEST)]}
    parsed = parse_manifest(raw(doc), OCI_INDEX)
    assert parsed.is_index and parsed.required_manifests() == [D1, D2] and parsed.required_blobs() == []


def test_docker_types_and_missing_media_type() -> None:
    doc = image(mediaType=DOCKER_MANIFEST)
    assert parse_manifest(raw(doc), DOCKER_MANIFEST).media_type == DOCKER_MANIFEST
    listing = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [desc(D1, DOCKER_MANIFEST)]}
    assert parse_manifest(raw(listing), None).media_type == DOCKER_LIST
    untyped = image()
    del untyped["mediaType"]
    assert parse_manifest(raw(untyped), OCI_MANIFEST).media_type == OCI_MANIFEST
    assert parse_manifest(raw(untyped), "application/json").media_type == OCI_MANIFEST


@pytest.mark.parametrize("doc,content_type", [
    ({**image(), "manifests": []}, OCI_MANIFEST),  # both manifests and layers
    (image(), OCI_INDEX),  # mediaType contradicts Content-Type
    (image(schemaVersion=1), OCI_MANIFEST),
    (image(config="nope"), OCI_MANIFEST),
    (image(layers=[desc("sha256:xyz")]), OCI_MANIFEST),
    (image(layers=[desc(D2, size=-1)]), OCI_MANIFEST),
    (image(layers=[desc(D2, size=True)]), OCI_MANIFEST),
    (image(layers="x"), OCI_MANIFEST),
    (image(annotations={"a": 1}), OCI_MANIFEST),
    ({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}, OCI_MANIFEST),  # no config
    ([1, 2], OCI_MANIFEST),
    (image(mediaType="application/vnd.example.unknown"), None),
    (image(mediaType=DOCKER_MANIFEST, artifactType="x/y"), DOCKER_MANIFEST),
])
def test_invalid_manifests(doc: Any, content_type: str | None) -> None:
    with pytest.raises(RegistryError) as exc:
        parse_manifest(raw(doc), content_type)
    assert exc.value.kind is Kind.MANIFEST_INVALID


def test_not_json() -> None:
    with pytest.raises(RegistryError) as exc:
        parse_manifest(b"\xff{", OCI_MANIFEST)
    assert exc.value.kind is Kind.MANIFEST_INVALID


def test_too_large() -> None:
    with pytest.raises(RegistryError) as exc:
        parse_manifest(b" " * (MAX_MANIFEST_BYTES + 1), OCI_MANIFEST)
    assert exc.value.kind is Kind.TOO_LARGE


def test_foreign_layers_are_not_required() -> None:
    doc = image(mediaType=DOCKER_MANIFEST, layers=[
        desc(D2, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", urls=["https://example.com"]),
        desc(D3, "application/vnd.docker.image.rootfs.diff.tar.gzip")])
    assert parse_manifest(raw(doc), DOCKER_MANIFEST).required_blobs() == [D1, D3]
