"""The content the official suite generates (conformance/setup.go and image.go), rebuilt in Python.

Documents are serialised the way Go's json.MarshalIndent(v, "", "\\t") serialises the suite's
structs: fields in struct order, omitempty fields left out when empty, []byte fields as base64,
a nil []byte as null (the descriptor's "newUnspecifiedField" has no omitempty, so every
descriptor carries it), and <, >, & escaped as \\u003c, \\u003e, \\u0026.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from tests.conformance.config import Config

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

NUM_WORKFLOWS = 16  # the suite's const block: pull=1, push=2, discovery=4, management=8, numWorkflows=16
EMPTY_LAYER_TEST_TAG = "emptylayer"
TEST_TAG_NAME = "tagtest0"
NONEXISTENT_MANIFEST = ".INVALID_MANIFEST_NAME"
INVALID_MANIFEST_CONTENT = b"blablabla"
ARTIFACT_TYPE_FILTER = "artifactType"
TEST_ANNOTATION_KEY = "org.opencontainers.conformance.test"
REF_ARTIFACT_TYPE_A = "application/vnd.nhl.peanut.butter.bagel"
REF_ARTIFACT_TYPE_B = "application/vnd.nba.strawberry.jam.croissant"
REF_ARTIFACT_TYPE_INDEX = "application/vnd.food.stand"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# The suite's layer: a gzipped tarball holding test.txt ("you bothered to find out what was in
# here. Congratulations!"), given there as base64.
LAYER_BASE64 = (
    "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0"
    "WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD"
    "jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA"
)
_AUTHOR_LETTERS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def go_json(doc: Any) -> bytes:
    """json.MarshalIndent(doc, "", "\\t") as Go writes it."""
    text = json.dumps(doc, indent="\t", separators=(",", ": "), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode()


def descriptor(media_type: str, digest: str, size: int, *, annotations: dict[str, str] | None = None,
               data: bytes | None = None, new_unspecified_field: bytes | None = None) -> dict[str, Any]:
    """image.go's descriptor, in its field order."""
    doc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        doc["annotations"] = dict(sorted(annotations.items()))
    if data:
        doc["data"] = base64.b64encode(data).decode()
    doc["newUnspecifiedField"] = base64.b64encode(new_unspecified_field).decode() \
        if new_unspecified_field is not None else None
    return doc


def manifest(config: dict[str, Any], layers: list[dict[str, Any]], *, media_type: str = OCI_MANIFEST,
             artifact_type: str = "", subject: dict[str, Any] | None = None,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """image.go's manifest: schemaVersion, mediaType, artifactType, config, layers, subject, annotations."""
    doc: dict[str, Any] = {"schemaVersion": 2}
    if media_type:
        doc["mediaType"] = media_type
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = config
    doc["layers"] = layers
    if subject is not None:
        doc["subject"] = subject
    if annotations:
        doc["annotations"] = dict(sorted(annotations.items()))
    return doc


@dataclass(frozen=True)
class TestBlob:
    __test__ = False  # not a pytest test class
    content: bytes
    digest: str

    @property
    def content_length(self) -> str:
        return str(len(self.content))


@dataclass
class ChunkedBlob:
    """testBlobB split in two chunks, as setupChunkedBlob(size) splits it."""
    blob: bytes = b""
    digest: str = ""
    chunk1: bytes = b""
    chunk2: bytes = b""
    chunk1_range: str = ""
    chunk2_range: str = ""

    @classmethod
    def random(cls, size: int) -> ChunkedBlob:
        blob = os.urandom(size)
        cut = size // 2 + 1
        return cls(blob, digest_of(blob), blob[:cut], blob[cut:], f"0-{cut - 1}", f"{cut}-{size - 1}")


@dataclass
class TestData:
    __test__ = False  # not a pytest test class
    configs: list[TestBlob] = field(default_factory=list)
    manifests: list[TestBlob] = field(default_factory=list)
    layer_blob: bytes = b""
    layer_blob_digest: str = ""
    empty_layer_manifest: bytes = b""
    empty_layer_manifest_digest: str = ""
    test_blob_a: bytes = b""
    test_blob_a_digest: str = ""
    chunked: ChunkedBlob = field(default_factory=ChunkedBlob)
    empty_json_blob: bytes = b"{}"
    empty_json_descriptor: dict[str, Any] = field(default_factory=dict)
    ref_blob_a: bytes = b""
    ref_blob_b: bytes = b""
    refs_a_config: bytes = b""
    refs_b_config: bytes = b""
    refs_a_layer: bytes = b""
    refs_b_layer: bytes = b""
    refs_c_layer: bytes = b""
    refs_index: bytes = b""
    annotation_values: dict[str, str] = field(default_factory=dict)
    dummy_digest: str = digest_of(b"hello world")

    def digest(self, which: str) -> str:
        """The digest of "dummy", "layer", "configs[i]" or "manifests[i]"."""
        if which == "dummy":
            return self.dummy_digest
        if which == "layer":
            return self.layer_blob_digest
        kind, index = which.rstrip("]").split("[")
        return (self.configs if kind == "configs" else self.manifests)[int(index)].digest

    def set_up_chunked_blob(self, size: int) -> None:
        self.chunked = ChunkedBlob.random(size)

    @classmethod
    def generate(cls, config: Config) -> TestData:
        data = cls()
        for _ in range(NUM_WORKFLOWS):
            # A random author per config, so each run's configs have digests of their own.
            author = "".join(secrets.choice(_AUTHOR_LETTERS) for _ in range(16))
            content = go_json({"author": author, "architecture": "amd64", "os": "linux",
                               "rootfs": {"type": "layers", "diff_ids": []}})
            data.configs.append(TestBlob(content, config.blob_digest or digest_of(content)))

        data.layer_blob = base64.b64decode(LAYER_BASE64)
        data.layer_blob_digest = digest_of(data.layer_blob)
        layers = [descriptor(OCI_LAYER_GZIP, data.layer_blob_digest, len(data.layer_blob))]

        def config_descriptor(blob: TestBlob) -> dict[str, Any]:
            # The config descriptor carries the config itself as "data" and an unknown field.
            return descriptor(OCI_CONFIG, blob.digest, len(blob.content), data=blob.content,
                              new_unspecified_field=b"hello world")

        for i in range(NUM_WORKFLOWS):
            content = go_json(manifest(config_descriptor(data.configs[i]), layers))
            data.manifests.append(TestBlob(content, config.manifest_digest or digest_of(content)))

        # Push: a manifest with no layers (and, in this version of setup.go, no mediaType field).
        data.empty_layer_manifest = go_json(manifest(config_descriptor(data.configs[1]), [], media_type=""))
        data.empty_layer_manifest_digest = digest_of(data.empty_layer_manifest)

        data.test_blob_a = os.urandom(42)
        data.test_blob_a_digest = digest_of(data.test_blob_a)
        data.set_up_chunked_blob(42)

        # Referrers: artifacts with a subject.
        data.empty_json_descriptor = descriptor(OCI_EMPTY, digest_of(data.empty_json_blob), len(data.empty_json_blob))
        data.ref_blob_a = b"NHL Peanut Butter on my NHL bagel"
        data.ref_blob_b = b"NBA Strawberry Jam on my NBA croissant"
        blob_a = descriptor(REF_ARTIFACT_TYPE_A, digest_of(data.ref_blob_a), len(data.ref_blob_a))
        blob_b = descriptor(REF_ARTIFACT_TYPE_B, digest_of(data.ref_blob_b), len(data.ref_blob_b))
        m3, m4 = data.manifests[3].content, data.manifests[4].content
        subject4 = descriptor(OCI_MANIFEST, digest_of(m4), len(m4))
        subject3 = descriptor(OCI_MANIFEST, digest_of(m3), len(m3))
        key = TEST_ANNOTATION_KEY

        def annotated(doc: dict[str, Any]) -> bytes:
            content = go_json(doc)
            data.annotation_values[digest_of(content)] = doc["annotations"][key]
            return content

        # config.mediaType carries the artifact type ...
        data.refs_a_config = annotated(manifest(blob_a, [data.empty_json_descriptor], subject=subject4,
                                                annotations={key: "test config a"}))
        data.refs_b_config = annotated(manifest(blob_b, [data.empty_json_descriptor], subject=subject4,
                                                annotations={key: "test config b"}))
        # ... or artifactType does, with the empty config.
        data.refs_a_layer = annotated(manifest(data.empty_json_descriptor, [blob_a], artifact_type=REF_ARTIFACT_TYPE_A,
                                               subject=subject4, annotations={key: "test layer a"}))
        data.refs_b_layer = annotated(manifest(data.empty_json_descriptor, [blob_b], artifact_type=REF_ARTIFACT_TYPE_B,
                                               subject=subject4, annotations={key: "test layer b"}))
        # The same as B, for a subject that is never pushed; no annotations.
        data.refs_c_layer = go_json(manifest(data.empty_json_descriptor, [blob_b], artifact_type=REF_ARTIFACT_TYPE_B,
                                             subject=subject3))
        index: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": REF_ARTIFACT_TYPE_INDEX,
            "manifests": [descriptor(OCI_MANIFEST, digest_of(data.refs_a_config), len(data.refs_a_config)),
                          descriptor(OCI_MANIFEST, digest_of(data.refs_a_layer), len(data.refs_a_layer))],
            "subject": subject4,
            "annotations": {key: "test index"},
        }
        data.refs_index = annotated(index)
        return data
