"""Small shared helpers for the /v2 API tests: digests, pushes, raw requests, error checks.

Every test runs against one live server for the whole session, so each test works in
repositories of its own (see unique_repo) and never assumes an empty registry.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import ServerProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_ND_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# The error codes OCI Distribution v1.1 defines, plus TAG_INVALID (Docker registry heritage).
OCI_ERROR_CODES = {
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN",
    "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS", "TAG_INVALID",
}
_CODE_RE = re.compile(r"[A-Z_]+")
_LINK_RE = re.compile(r'<([^>]+)>;\s*rel="next"')


# -- digests and names ----------------------------------------------------------------------

def digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def unique_repo(prefix: str = "t") -> str:
    """A fresh, valid repository name, so tests sharing one server never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


# -- assertions -----------------------------------------------------------------------------

def assert_oci_error(resp: httpx.Response, status: int | tuple[int, ...], code: str | None = None) -> dict[str, Any]:
    """The response is an OCI error: expected status, JSON {"errors": [{"code", "message"}]}."""
    statuses = (status,) if isinstance(status, int) else status
    assert resp.status_code in statuses, (resp.status_code, resp.text)
    if resp.request.method == "HEAD":
        assert resp.content == b""
        return {}
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"], body
    for entry in body["errors"]:
        assert isinstance(entry, dict), body
        assert isinstance(entry.get("code"), str) and _CODE_RE.fullmatch(entry["code"]), body
        assert entry["code"] in OCI_ERROR_CODES, body
        assert isinstance(entry.get("message", ""), str), body
    if code is not None:
        assert body["errors"][0]["code"] == code, body
    return body


def next_link(resp: httpx.Response) -> str | None:
    """The target of a Link: <...>; rel="next" header, or None."""
    header = resp.headers.get("link")
    if header is None:
        return None
    m = _LINK_RE.search(header)
    assert m, header
    return m.group(1)


# -- blobs ----------------------------------------------------------------------------------

def start_upload(client: httpx.Client, repo: str) -> str:
    """POST a new upload session; returns its Location."""
    r = client.post(f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    assert location
    return location


def push_blob(client: httpx.Client, repo: str, data: bytes, algorithm: str = "sha256") -> str:
    """POST then PUT the whole blob; returns its digest."""
    d = digest(data, algorithm)
    location = start_upload(client, repo)
    r = client.put(location, params={"digest": d}, content=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d
    return d


def blob_exists(client: httpx.Client, repo: str, d: str) -> bool:
    r = client.head(f"/v2/{repo}/blobs/{d}")
    assert r.status_code in (200, 404), r.status_code
    return r.status_code == 200


# -- manifests ------------------------------------------------------------------------------

def descriptor(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(content), "size": len(content), **extra}


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2).encode()


def put_manifest(client: httpx.Client, repo: str, ref: str, body: bytes,
                 media_type: str | None = OCI_MANIFEST) -> httpx.Response:
    headers = {"Content-Type": media_type} if media_type else {}
    return client.put(f"/v2/{repo}/manifests/{ref}", content=body, headers=headers)


@dataclass
class Pushed:
    """A manifest pushed to the registry, with what it references."""
    repo: str
    body: bytes
    media_type: str
    blobs: list[str] = field(default_factory=list)
    tag: str | None = None

    @property
    def digest(self) -> str:
        return digest(self.body)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.body), **extra}


def image_manifest(config: bytes, layers: list[bytes], *, media_type: str = OCI_MANIFEST,
                   config_type: str | None = None, layer_type: str | None = None,
                   **fields: Any) -> bytes:
    docker = media_type == DOCKER_MANIFEST
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config_type or (DOCKER_CONFIG if docker else OCI_CONFIG), config),
        "layers": [descriptor(layer_type or (DOCKER_LAYER if docker else OCI_LAYER), layer)
                   for layer in layers],
    }
    doc.update(fields)
    return encode(doc)


def push_image(client: httpx.Client, repo: str, tag: str | None = None, *, layers: int = 1,
               media_type: str = OCI_MANIFEST, **fields: Any) -> Pushed:
    """Push a config, `layers` random layers and an image manifest (by tag, else by digest)."""
    config = encode({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                     "nonce": uuid.uuid4().hex})
    layer_data = [random_bytes(64 + i) for i in range(layers)]
    blobs = [push_blob(client, repo, config)] + [push_blob(client, repo, d) for d in layer_data]
    body = image_manifest(config, layer_data, media_type=media_type, **fields)
    pushed = Pushed(repo, body, media_type, blobs, tag)
    r = put_manifest(client, repo, tag or pushed.digest, body, media_type)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == pushed.digest
    return pushed


def push_index(client: httpx.Client, repo: str, children: list[Pushed], tag: str | None = None, *,
               media_type: str = OCI_INDEX, **fields: Any) -> Pushed:
    platforms = [{"architecture": arch, "os": "linux"} for arch in ("amd64", "arm64", "s390x", "ppc64le")]
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [child.descriptor(platform=platforms[i % len(platforms)])
                      for i, child in enumerate(children)],
    }
    doc.update(fields)
    body = encode(doc)
    pushed = Pushed(repo, body, media_type, [], tag)
    r = put_manifest(client, repo, tag or pushed.digest, body, media_type)
    assert r.status_code == 201, r.text
    return pushed


def push_artifact(client: httpx.Client, repo: str, subject: dict[str, Any] | None, artifact_type: str,
                  *, annotations: dict[str, str] | None = None, tag: str | None = None) -> Pushed:
    """An OCI artifact: empty config, one layer, artifactType, optional subject."""
    layer = random_bytes(32)
    push_blob(client, repo, EMPTY_JSON)
    push_blob(client, repo, layer)
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(OCI_EMPTY, EMPTY_JSON),
        "layers": [descriptor("application/octet-stream", layer)],
    }
    if subject is not None:
        doc["subject"] = subject
    if annotations:
        doc["annotations"] = annotations
    body = encode(doc)
    pushed = Pushed(repo, body, OCI_MANIFEST, [EMPTY_JSON_DIGEST, digest(layer)], tag)
    r = put_manifest(client, repo, tag or pushed.digest, body)
    assert r.status_code == 201, r.text
    if subject is not None:
        assert r.headers.get("oci-subject") == subject["digest"]
    return pushed


# -- raw HTTP: paths exactly as written (httpx would normalise '..' and '//') -----------------

@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(server: ServerProcess, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, auth: bool = True) -> RawResponse:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        h = {"Authorization": server.basic_header} if auth else {}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def assert_raw_oci_error(resp: RawResponse, status: int, code: str) -> None:
    assert resp.status == status, (resp.status, resp.body)
    assert resp.headers.get("content-type", "").startswith("application/json")
    errors = resp.json()["errors"]
    assert errors and errors[0]["code"] == code, errors
    assert isinstance(errors[0].get("message", ""), str)


def snapshot_tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with (size, mtime_ns), for before/after comparisons."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out
