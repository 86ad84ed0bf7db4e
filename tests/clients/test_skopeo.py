"""skopeo against cargohold: OCI layouts made in Python go up and come back byte for byte.

Covers copy in both directions (with --src-creds/--dest-creds), registry-to-registry copy,
`copy --all` of a two-platform index, inspect, list-tags, delete, and refused credentials.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support import oci_layout as oci
from tests.support.clients import Skopeo, unique_repo
from tests.support.server import ServerProcess

pytestmark = pytest.mark.clients


def assert_same_image(dest: oci.Layout, ref: str, image: oci.Image) -> None:
    entry = dest.ref_descriptor(ref)
    assert entry["digest"] == image.digest
    assert dest.read_blob(image.digest) == image.manifest
    assert dest.read_blob(image.config_digest) == image.config
    for digest, layer in zip(image.layer_digests, image.layers, strict=True):
        assert dest.read_blob(digest) == layer


def test_copy_roundtrip_and_inspect(skopeo: Skopeo, server: ServerProcess, tmp_path: Path) -> None:
    repo = unique_repo("skopeo-roundtrip")
    src = oci.Layout(tmp_path / "src")
    image = oci.make_image((4096, 1024 * 1024, 300 * 1024), labels={"purpose": "roundtrip"})
    src.add_image(image)
    src.tag("v1", oci.OCI_MANIFEST, image.manifest)

    skopeo.copy(f"oci:{src.path}:v1", skopeo.ref(repo, "v1"))  # uses --dest-creds
    assert skopeo.inspect_raw(skopeo.ref(repo, "v1")) == image.manifest
    info = skopeo.inspect(skopeo.ref(repo, "v1"))
    assert info["Digest"] == image.digest
    assert info["Layers"] == image.layer_digests
    assert info["Architecture"] == "amd64" and info["Labels"] == {"purpose": "roundtrip"}
    config = json.loads(skopeo("inspect", "--config", "--raw", "--tls-verify=false", "--creds", skopeo.creds,
                               skopeo.ref(repo, "v1")).stdout)
    assert config["rootfs"]["diff_ids"] == json.loads(image.config)["rootfs"]["diff_ids"]

    dest = oci.Layout(tmp_path / "dest")
    skopeo.copy(skopeo.ref(repo, "v1"), f"oci:{dest.path}:back")  # uses --src-creds
    assert_same_image(dest, "back", image)

    # By digest too, and into a second tag through a registry-to-registry copy.
    skopeo.copy(skopeo.ref(repo, image.digest), f"oci:{dest.path}:bydigest")
    assert dest.ref_descriptor("bydigest")["digest"] == image.digest
    other = unique_repo("skopeo-copy-target")
    skopeo.copy(skopeo.ref(repo, "v1"), skopeo.ref(other, "copied"))
    assert skopeo.inspect_raw(skopeo.ref(other, "copied")) == image.manifest
    assert skopeo.list_tags(other) == ["copied"]

    skopeo.copy(f"oci:{src.path}:v1", skopeo.ref(repo, "v2"))
    skopeo.copy(f"oci:{src.path}:v1", skopeo.ref(repo, "latest"))
    assert skopeo.list_tags(repo) == ["latest", "v1", "v2"]


def test_copy_all_multiarch_index(skopeo: Skopeo, tmp_path: Path) -> None:
    repo = unique_repo("skopeo-multiarch")
    src = oci.Layout(tmp_path / "src")
    amd64 = oci.make_image((2048, 200 * 1024), arch="amd64")
    arm64 = oci.make_image((2048, 200 * 1024), arch="arm64")
    for image in (amd64, arm64):
        src.add_image(image)
    index = oci.make_index([amd64, arm64], annotations={"org.opencontainers.image.title": "two platforms"})
    src.tag("multi", oci.OCI_INDEX, index)

    skopeo.copy(f"oci:{src.path}:multi", skopeo.ref(repo, "multi"), "--all")
    raw = skopeo.inspect_raw(skopeo.ref(repo, "multi"))
    assert raw == index  # stored and served byte for byte, so the digest is unchanged
    for image in (amd64, arm64):
        assert skopeo.inspect_raw(skopeo.ref(repo, image.digest)) == image.manifest
    for image in (amd64, arm64):
        # skopeo picks the platform's image from the index (Digest stays the index's own).
        arch = image.platform["architecture"]
        info = skopeo.inspect(skopeo.ref(repo, "multi"), "--override-arch", arch)
        assert info["Architecture"] == arch and info["Layers"] == image.layer_digests
        assert info["Digest"] == oci.sha256(index)

    dest = oci.Layout(tmp_path / "dest")
    skopeo.copy(skopeo.ref(repo, "multi"), f"oci:{dest.path}:multi", "--all")
    entry = dest.ref_descriptor("multi")
    assert entry["digest"] == oci.sha256(index)
    assert dest.read_blob(entry["digest"]) == index
    assert_same_image_blobs(dest, amd64)
    assert_same_image_blobs(dest, arm64)

    # Without --all only the local platform's image is copied (skopeo picks it from the index).
    single = oci.Layout(tmp_path / "single")
    skopeo.copy(skopeo.ref(repo, "multi"), f"oci:{single.path}:one", "--override-arch", "arm64")
    assert single.ref_descriptor("one")["digest"] == arm64.digest


def assert_same_image_blobs(dest: oci.Layout, image: oci.Image) -> None:
    assert dest.read_blob(image.digest) == image.manifest
    assert dest.read_blob(image.config_digest) == image.config
    for digest, layer in zip(image.layer_digests, image.layers, strict=True):
        assert dest.read_blob(digest) == layer


def test_delete(skopeo: Skopeo, server: ServerProcess, tmp_path: Path) -> None:
    repo = unique_repo("skopeo-delete")
    src = oci.Layout(tmp_path / "src")
    keep, drop = oci.make_image((1024,)), oci.make_image((1024,))
    for name, image in (("keep", keep), ("drop", drop)):
        src.add_image(image)
        src.tag(name, oci.OCI_MANIFEST, image.manifest)
        skopeo.copy(f"oci:{src.path}:{name}", skopeo.ref(repo, name))
    skopeo.copy(f"oci:{src.path}:drop", skopeo.ref(repo, "drop-alias"))
    assert skopeo.list_tags(repo) == ["drop", "drop-alias", "keep"]

    # skopeo resolves the tag and deletes the manifest by digest: every tag on it goes too.
    skopeo.delete(skopeo.ref(repo, "drop"))
    assert skopeo.list_tags(repo) == ["keep"]
    gone = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", skopeo.creds,
                  skopeo.ref(repo, drop.digest), check=False)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr.lower(), gone.stderr
    assert skopeo.inspect_raw(skopeo.ref(repo, "keep")) == keep.manifest

    again = skopeo.delete(skopeo.ref(repo, drop.digest), check=False)
    assert again.returncode != 0
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=30) as c:
        assert c.get(f"/v2/{repo}/manifests/{drop.digest}").status_code == 404
        assert c.get(f"/v2/{repo}/manifests/keep").status_code == 200


def test_refused_credentials(skopeo: Skopeo, server: ServerProcess, tmp_path: Path) -> None:
    repo = unique_repo("skopeo-creds")
    src = oci.Layout(tmp_path / "src")
    image = oci.make_image((1024,))
    src.add_image(image)
    src.tag("v1", oci.OCI_MANIFEST, image.manifest)

    bad = f"{server.key_id}:wrong-secret"
    push = skopeo("copy", "--retry-times", "0", "--dest-tls-verify=false", "--dest-creds", bad,
                  f"oci:{src.path}:v1", skopeo.ref(repo, "v1"), check=False)
    assert push.returncode != 0
    assert "unauthorized" in push.stderr.lower() or "401" in push.stderr, push.stderr
    anonymous = skopeo("list-tags", "--tls-verify=false", "--no-creds",
                       f"docker://{server.address}/{repo}", check=False)
    assert anonymous.returncode != 0

    skopeo.copy(f"oci:{src.path}:v1", skopeo.ref(repo, "v1"))
    pull = skopeo("copy", "--retry-times", "0", "--src-tls-verify=false", "--src-creds", bad,
                  skopeo.ref(repo, "v1"), f"oci:{tmp_path / 'dest'}:v1", check=False)
    assert pull.returncode != 0
    assert "unauthorized" in pull.stderr.lower() or "401" in pull.stderr, pull.stderr
