"""Build OCI image layouts (image-spec "oci-layout" directories) from Python, for client tests.

No base images are available, so every image is made here: gzip'd tar layers holding random
bytes (unique per call, so repositories never share blobs by accident), an image config with
the matching diff_ids, a manifest, and optionally an index over several platforms. skopeo
reads and writes these directories as `oci:DIR:REF`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
REF_NAME = "org.opencontainers.image.ref.name"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def tar_of(files: dict[str, bytes]) -> bytes:
    """An uncompressed, reproducible tar of the given files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def random_layer(size: int, name: str = "data.bin") -> tuple[bytes, str]:
    """(gzip'd tar, diff_id) of one file holding `size` random bytes."""
    raw = tar_of({name: os.urandom(size)})
    return gzip.compress(raw, compresslevel=1, mtime=0), sha256(raw)


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


@dataclass
class Image:
    """One single-platform image: its manifest bytes and the blobs it needs."""

    manifest: bytes
    config: bytes
    layers: list[bytes]
    platform: dict[str, str]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def layer_digests(self) -> list[str]:
        return [sha256(layer) for layer in self.layers]

    def descriptor(self, with_platform: bool = False) -> dict[str, Any]:
        extra: dict[str, Any] = {"platform": dict(self.platform)} if with_platform else {}
        return descriptor(OCI_MANIFEST, self.manifest, **extra)


def make_image(layer_sizes: tuple[int, ...] = (1024, 64 * 1024), *, arch: str = "amd64",
               os_name: str = "linux", labels: dict[str, str] | None = None) -> Image:
    layers: list[bytes] = []
    diff_ids: list[str] = []
    for i, size in enumerate(layer_sizes):
        blob, diff_id = random_layer(size, f"layer{i}.bin")
        layers.append(blob)
        diff_ids.append(diff_id)
    config_doc: dict[str, Any] = {
        "architecture": arch, "os": os_name, "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"cargohold test layer {i}"}
                    for i in range(len(layers))],
    }
    config = canonical(config_doc)
    manifest = canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER_GZIP, layer) for layer in layers],
    })
    return Image(manifest, config, layers, {"architecture": arch, "os": os_name})


def make_index(images: list[Image], annotations: dict[str, str] | None = None) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": [img.descriptor(with_platform=True) for img in images]}
    if annotations:
        doc["annotations"] = annotations
    return canonical(doc)


def make_artifact(subject: dict[str, Any], artifact_type: str, payload: bytes,
                  annotations: dict[str, str] | None = None) -> tuple[bytes, list[bytes]]:
    """An OCI 1.1 artifact manifest (empty config, one layer) pointing at `subject`.

    Returns (manifest bytes, blobs it needs)."""
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": descriptor(OCI_EMPTY, EMPTY_JSON),
        "layers": [descriptor("application/vnd.cargohold.test+text", payload)],
        "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
    }
    if annotations:
        doc["annotations"] = annotations
    return canonical(doc), [EMPTY_JSON, payload]


@dataclass
class Layout:
    """An OCI layout directory; `add` records named references in index.json."""

    path: Path
    refs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self._write_index()

    def blob(self, data: bytes) -> str:
        digest = sha256(data)
        target = self.path / "blobs" / "sha256" / digest.split(":", 1)[1]
        if not target.exists():
            target.write_bytes(data)
        return digest

    def add_image(self, image: Image) -> None:
        for data in (image.config, *image.layers, image.manifest):
            self.blob(data)

    def tag(self, ref: str, media_type: str, data: bytes) -> None:
        self.blob(data)
        self.refs = [r for r in self.refs if r.get("annotations", {}).get(REF_NAME) != ref]
        self.refs.append(descriptor(media_type, data, annotations={REF_NAME: ref}))
        self._write_index()

    def _write_index(self) -> None:
        (self.path / "index.json").write_bytes(canonical(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs}))

    def read_index(self) -> dict[str, Any]:
        return json.loads((self.path / "index.json").read_bytes())  # type: ignore[no-any-return]

    def read_blob(self, digest: str) -> bytes:
        return (self.path / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()

    def ref_descriptor(self, ref: str | None = None) -> dict[str, Any]:
        """The index.json entry for `ref` (or the only entry when ref is None)."""
        entries = self.read_index()["manifests"]
        if ref is None:
            assert len(entries) == 1, entries
            return entries[0]  # type: ignore[no-any-return]
        for entry in entries:
            if entry.get("annotations", {}).get(REF_NAME) == ref:
                return entry  # type: ignore[no-any-return]
        raise KeyError(ref)
