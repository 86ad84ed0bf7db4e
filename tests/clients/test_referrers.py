"""Artifacts with a `subject` pushed by real clients, and the referrers API that lists them.

Which clients: skopeo (Debian) copies an OCI layout holding an OCI 1.1 artifact manifest
(artifactType, empty config, `subject`) as is, so it pushes the subject field unchanged; and
oras-py (PyPI `oras`, the ORAS Python SDK) pushes files as an artifact with `subject=`. The oras
CLI is not packaged for Debian 12, and neither skopeo 1.9 nor oras-py can *query* the referrers
API, so the listing (GET /v2/<name>/referrers/<digest>) is read with httpx; the subject image
and the artifacts are pulled back with skopeo / oras-py to show that they stay intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import oci_layout as oci
from tests.support.clients import Skopeo, unavailable, unique_repo
from tests.support.server import ServerProcess

pytestmark = pytest.mark.clients

SBOM_TYPE = "application/vnd.cargohold.test.sbom.v1+json"
SIG_TYPE = "application/vnd.cargohold.test.signature.v1"


def referrers(server: ServerProcess, repo: str, digest: str, artifact_type: str | None = None
              ) -> tuple[httpx.Response, list[dict[str, Any]]]:
    params = {"artifactType": artifact_type} if artifact_type else None
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=30) as c:
        r = c.get(f"/v2/{repo}/referrers/{digest}", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(oci.OCI_INDEX)
    body = r.json()
    assert body["schemaVersion"] == 2 and body["mediaType"] == oci.OCI_INDEX
    return r, body["manifests"]


def push_subject_image(skopeo: Skopeo, layout: oci.Layout, repo: str) -> oci.Image:
    image = oci.make_image((1024, 128 * 1024))
    layout.add_image(image)
    layout.tag("app", oci.OCI_MANIFEST, image.manifest)
    skopeo.copy(f"oci:{layout.path}:app", skopeo.ref(repo, "app"))
    return image


def test_skopeo_pushes_artifacts_with_subject(skopeo: Skopeo, server: ServerProcess, tmp_path: Path) -> None:
    repo = unique_repo("referrers-skopeo")
    layout = oci.Layout(tmp_path / "src")
    image = push_subject_image(skopeo, layout, repo)

    assert referrers(server, repo, image.digest)[1] == []  # none yet: an empty index, not 404

    artifacts: dict[str, bytes] = {}
    for name, artifact_type, payload in (("sbom", SBOM_TYPE, b'{"packages": []}'),
                                         ("sig", SIG_TYPE, b"signature-bytes")):
        manifest, blobs = oci.make_artifact(image.descriptor(), artifact_type, payload,
                                            annotations={"org.opencontainers.image.title": name})
        for blob in blobs:
            layout.blob(blob)
        layout.tag(name, oci.OCI_MANIFEST, manifest)
        skopeo.copy(f"oci:{layout.path}:{name}", skopeo.ref(repo, f"{name}-tag"))
        assert skopeo.inspect_raw(skopeo.ref(repo, f"{name}-tag")) == manifest  # subject kept
        artifacts[artifact_type] = manifest

    _, listed = referrers(server, repo, image.digest)
    by_digest = {entry["digest"]: entry for entry in listed}
    assert set(by_digest) == {oci.sha256(m) for m in artifacts.values()}
    for artifact_type, manifest in artifacts.items():
        entry = by_digest[oci.sha256(manifest)]
        assert entry["artifactType"] == artifact_type
        assert entry["mediaType"] == oci.OCI_MANIFEST and entry["size"] == len(manifest)
        assert entry["annotations"]["org.opencontainers.image.title"] in ("sbom", "sig")

    response, filtered = referrers(server, repo, image.digest, SIG_TYPE)
    assert [e["digest"] for e in filtered] == [oci.sha256(artifacts[SIG_TYPE])]
    assert response.headers.get("OCI-Filters-Applied") == "artifactType"

    # The subject is untouched by its referrers: it still pulls, byte for byte.
    dest = oci.Layout(tmp_path / "dest")
    skopeo.copy(skopeo.ref(repo, "app"), f"oci:{dest.path}:app")
    assert dest.ref_descriptor("app")["digest"] == image.digest
    for digest, layer in zip(image.layer_digests, image.layers, strict=True):
        assert dest.read_blob(digest) == layer
    # And an artifact comes back with its subject.
    skopeo.copy(skopeo.ref(repo, "sig-tag"), f"oci:{dest.path}:sig")
    pulled = json.loads(dest.read_blob(dest.ref_descriptor("sig")["digest"]))
    assert pulled["subject"]["digest"] == image.digest
    assert skopeo.list_tags(repo) == ["app", "sbom-tag", "sig-tag"]


def test_oras_push_with_subject(skopeo: Skopeo, server: ServerProcess, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import oras.client
        import oras.oci
    except ImportError:
        unavailable("oras-py (PyPI 'oras') is not installed")

    repo = unique_repo("referrers-oras")
    layout = oci.Layout(tmp_path / "src")
    image = push_subject_image(skopeo, layout, repo)

    # oras-py takes credentials from ~/.docker/config.json (as `docker login` leaves them); HOME is
    # this test's own, so that is the only file it reads.
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    docker_config = home / ".docker" / "config.json"
    docker_config.write_text(json.dumps({"auths": {server.address: {"auth": server.basic_header.split()[1]}}}))
    monkeypatch.setenv("HOME", str(home))
    client = oras.client.OrasClient(hostname=server.address, insecure=True, auth_backend="basic")
    sbom = tmp_path / "sbom.json"
    sbom.write_text('{"spdxVersion": "SPDX-2.3", "packages": []}')
    config = tmp_path / "config.json"
    config.write_text("{}")
    subject = oras.oci.Subject(mediaType=oci.OCI_MANIFEST, digest=image.digest, size=len(image.manifest))
    response = client.push(
        target=f"{server.address}/{repo}:sbom", files=[f"{sbom}:application/spdx+json"],
        manifest_config=f"{config}:{SBOM_TYPE}", subject=subject, config_path=str(docker_config),
        manifest_annotations={"org.example.tool": "oras-py"}, disable_path_validation=True, quiet=True)
    assert response.status_code == 201
    artifact_digest = response.headers["Docker-Content-Digest"]
    assert response.headers.get("OCI-Subject") == image.digest

    _, listed = referrers(server, repo, image.digest)
    assert [e["digest"] for e in listed] == [artifact_digest]
    assert listed[0]["artifactType"] == SBOM_TYPE  # no artifactType field: the config media type
    assert listed[0]["annotations"] == {"org.example.tool": "oras-py"}
    assert referrers(server, repo, image.digest, "application/x-other")[1] == []

    out = tmp_path / "out"
    files = client.pull(target=f"{server.address}/{repo}:sbom", outdir=str(out), config_path=str(docker_config))
    assert [Path(f).read_text() for f in files] == [sbom.read_text()]

    # A second referrer, its blob sent as a chunked upload (POST, PATCH with Content-Range, PUT).
    signature = tmp_path / "signature.bin"
    signature.write_bytes(os.urandom(200 * 1024 + 7))
    response = client.push(
        target=f"{server.address}/{repo}:signature", files=[f"{signature}:application/octet-stream"],
        manifest_config=f"{config}:{SIG_TYPE}", subject=subject, config_path=str(docker_config),
        do_chunked=True, chunk_size=64 * 1024, disable_path_validation=True, quiet=True)
    assert response.status_code == 201
    _, listed = referrers(server, repo, image.digest)
    assert sorted(e["artifactType"] for e in listed) == sorted([SBOM_TYPE, SIG_TYPE])
    assert [e["artifactType"] for e in referrers(server, repo, image.digest, SIG_TYPE)[1]] == [SIG_TYPE]
    files = client.pull(target=f"{server.address}/{repo}:signature", outdir=str(tmp_path / "out2"),
                        config_path=str(docker_config))
    assert [Path(f).read_bytes() for f in files] == [signature.read_bytes()]

    # The subject image still pulls with a real client.
    info = skopeo.inspect(skopeo.ref(repo, "app"))
    assert info["Digest"] == image.digest and info["Layers"] == image.layer_digests
    dest = oci.Layout(tmp_path / "dest")
    skopeo.copy(skopeo.ref(repo, image.digest), f"oci:{dest.path}:app")
    assert dest.read_blob(image.digest) == image.manifest
