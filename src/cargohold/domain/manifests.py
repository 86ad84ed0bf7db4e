"""Manifest parsing: what a pushed document is, what it references, and whether it is valid.

Pure: takes the exact bytes pushed and the request's Content-Type, returns a ParsedManifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cargohold.domain.digests import is_digest
from cargohold.errors import Kind, RegistryError

MAX_MANIFEST_BYTES = 4 * 1024 * 1024

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
OCI_EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_IMAGE_CONFIG = "application/vnd.docker.container.image.v1+json"

IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = IMAGE_TYPES + INDEX_TYPES

# Layers of these kinds may live elsewhere (urls): the registry need not hold them.
_FOREIGN_LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None


@dataclass
class ParsedManifest:
    media_type: str
    config: Descriptor | None
    layers: list[Descriptor] = field(default_factory=list)
    children: list[Descriptor] = field(default_factory=list)  # index entries
    subject: Descriptor | None = None
    artifact_type: str | None = None  # as the referrers API reports it
    annotations: dict[str, str] | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def required_blobs(self) -> list[str]:
        """Digests of blobs that must exist in the repository for the manifest to be accepted."""
        out: list[str] = []
        if self.config is not None:
            out.append(self.config.digest)
        out.extend(d.digest for d in self.layers if d.media_type not in _FOREIGN_LAYER_TYPES)
        return list(dict.fromkeys(out))

    def required_manifests(self) -> list[str]:
        return list(dict.fromkeys(d.digest for d in self.children))

    def layer_bytes(self) -> int:
        """Size as ECR reports imageSizeInBytes: the sum of the (compressed) layer sizes."""
        return sum(d.size for d in self.layers)


def _invalid(message: str) -> RegistryError:
    return RegistryError(Kind.MANIFEST_INVALID, message)


def _base_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where}: descriptor must be an object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}: descriptor mediaType must be a non-empty string")
    if not isinstance(digest, str) or not is_digest(digest):
        raise _invalid(f"{where}: descriptor digest is invalid")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _invalid(f"{where}: descriptor size must be a non-negative integer")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid(f"{where}: artifactType must be a string")
    annotations = value.get("annotations")
    if annotations is not None and not (isinstance(annotations, dict)
                                        and all(isinstance(v, str) for v in annotations.values())):
        raise _invalid(f"{where}: annotations must map strings to strings")
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise _invalid(f"{where}: platform must be an object")
    return Descriptor(media_type, digest, size, artifact_type, annotations, platform)


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    if len(body) > MAX_MANIFEST_BYTES:
        raise RegistryError(Kind.TOO_LARGE, f"manifest exceeds {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")

    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    header = _base_type(content_type)
    if header in DOCKER_SCHEMA1 or declared in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise _invalid("Docker image manifest schema 1 is not supported; push schema 2 or OCI")
    if header in MANIFEST_TYPES and declared is not None and declared != header:
        raise _invalid(f"mediaType {declared!r} contradicts Content-Type {header!r}")

    has_index_fields = "manifests" in doc
    has_image_fields = "layers" in doc or "config" in doc
    if has_index_fields and has_image_fields:
        raise _invalid("a manifest cannot have both 'manifests' and 'layers'/'config'")

    media_type = declared or (header if header in MANIFEST_TYPES else None)
    if media_type is None:
        media_type = OCI_INDEX if has_index_fields else OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise _invalid(f"unsupported manifest media type {media_type!r}")
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")

    annotations = doc.get("annotations")
    if annotations is not None and not (isinstance(annotations, dict)
                                        and all(isinstance(v, str) for v in annotations.values())):
        raise _invalid("annotations must map strings to strings")
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None

    if media_type in INDEX_TYPES:
        if has_image_fields:
            raise _invalid("an index cannot have 'layers' or 'config'")
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise _invalid("'manifests' must be a list")
        children = [_descriptor(e, f"manifests[{i}]") for i, e in enumerate(entries)]
        return ParsedManifest(media_type, None, [], children, subject, artifact_type, annotations)

    if has_index_fields:
        raise _invalid("an image manifest cannot have 'manifests'")
    if "config" not in doc:
        raise _invalid("an image manifest needs 'config'")
    config = _descriptor(doc["config"], "config")
    raw_layers = doc.get("layers", [])
    if not isinstance(raw_layers, list):
        raise _invalid("'layers' must be a list")
    layers = [_descriptor(e, f"layers[{i}]") for i, e in enumerate(raw_layers)]
    if media_type == DOCKER_MANIFEST and artifact_type is not None:
        raise _invalid("artifactType is not allowed in a Docker manifest")
    # The referrers API reports artifactType, falling back to the config's media type.
    effective = artifact_type or (config.media_type if media_type == OCI_MANIFEST else None)
    return ParsedManifest(media_type, config, layers, [], subject, effective, annotations)
