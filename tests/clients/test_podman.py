"""podman (with its built-in buildah) against cargohold: login, push, pull, multi-arch lists.

podman runs on a private vfs store (tests/support/clients.py) and speaks plain HTTP through
--tls-verify=false. Images are built FROM scratch (no RUN, so any --arch builds here without
emulation); the arch-specific file and --no-cache keep podman 4.3 from reusing one build for
both platforms (its layer cache ignores --arch).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from tests.support.clients import Podman, Skopeo, unique_repo
from tests.support.server import ServerProcess

pytestmark = pytest.mark.clients

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def build_context(path: Path, label: str, big_bytes: int = 2 * 1024 * 1024) -> Path:
    path.mkdir(parents=True)
    (path / "label.txt").write_text(f"{label} {os.urandom(8).hex()}\n")
    (path / "big.bin").write_bytes(os.urandom(big_bytes))
    (path / "Containerfile").write_text(
        "FROM scratch\nCOPY big.bin /data/big.bin\nCOPY label.txt /label.txt\n")
    return path


def login(podman: Podman, server: ServerProcess) -> None:
    out = podman("login", "--tls-verify=false", "-u", server.key_id, "--password-stdin", server.address,
                 input=server.secret)
    assert "Login Succeeded" in out.stdout


def inspect(podman: Podman, ref: str) -> dict[str, object]:
    return json.loads(podman("image", "inspect", ref).stdout)[0]  # type: ignore[no-any-return]


def test_login_push_pull(podman: Podman, server: ServerProcess, tmp_path: Path) -> None:
    repo = unique_repo("podman-roundtrip")
    ref = f"{server.address}/{repo}"
    login(podman, server)
    ctx = build_context(tmp_path / "ctx", "single")
    podman("build", "-t", f"{ref}:v1", "-f", str(ctx / "Containerfile"), str(ctx))
    built = inspect(podman, f"{ref}:v1")

    digest_file = tmp_path / "digest"
    podman("push", "--tls-verify=false", "--digestfile", str(digest_file), f"{ref}:v1")
    digest = digest_file.read_text().strip()
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=30) as c:
        r = c.head(f"/v2/{repo}/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest

    podman("rmi", f"{ref}:v1")
    assert podman("image", "exists", f"{ref}:v1", check=False).returncode == 1
    podman("pull", "--tls-verify=false", f"{ref}:v1")
    pulled = inspect(podman, f"{ref}:v1")
    assert pulled["Id"] == built["Id"]  # the config digest: same image
    assert pulled["Digest"] == digest
    assert podman("image", "exists", f"{ref}@{digest}", check=False).returncode == 0

    # The file system came back intact.
    mount = tmp_path / "out"
    container = podman("create", f"{ref}:v1", "/nothing").stdout.strip()
    try:
        podman("cp", f"{container}:/data/big.bin", str(mount))
    finally:
        podman("rm", "-f", container, check=False)
    assert mount.read_bytes() == (ctx / "big.bin").read_bytes()

    # After logout the registry refuses the same pull.
    podman("logout", server.address)
    podman("rmi", f"{ref}:v1")
    refused = podman("pull", "--tls-verify=false", f"{ref}:v1", check=False)
    assert refused.returncode != 0
    assert "unauthorized" in refused.stderr.lower() or "authentication required" in refused.stderr, \
        refused.stderr


def test_manifest_list_push_all(podman: Podman, skopeo: Skopeo, server: ServerProcess, tmp_path: Path) -> None:
    repo = unique_repo("podman-multiarch")
    target = f"{server.address}/{repo}"
    login(podman, server)
    images: dict[str, str] = {}
    for arch in ("amd64", "arm64"):
        ctx = build_context(tmp_path / arch, arch, big_bytes=512 * 1024)
        local = f"localhost/{repo.replace('/', '-')}:{arch}"
        podman("build", "--no-cache", "--arch", arch, "--os", "linux", "-t", local,
               "-f", str(ctx / "Containerfile"), str(ctx))
        assert inspect(podman, local)["Architecture"] == arch
        images[arch] = local

    listname = f"localhost/{repo.replace('/', '-')}-list"
    podman("manifest", "create", listname)
    for local in images.values():
        podman("manifest", "add", listname, f"containers-storage:{local}")
    local_list = json.loads(podman("manifest", "inspect", listname).stdout)
    assert sorted(m["platform"]["architecture"] for m in local_list["manifests"]) == ["amd64", "arm64"]

    podman("manifest", "push", "--all", "--tls-verify=false", listname, f"docker://{target}:multi")

    # skopeo reads the index back exactly as the registry stored it.
    raw = skopeo.inspect_raw(skopeo.ref(repo, "multi"))
    index = json.loads(raw)
    assert index["mediaType"] in (OCI_INDEX, DOCKER_LIST)
    platforms = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    assert sorted(platforms) == ["amd64", "arm64"]
    for arch, child in platforms.items():
        config = skopeo.inspect(skopeo.ref(repo, child))
        assert config["Architecture"] == arch and config["Os"] == "linux"
    assert skopeo.inspect(skopeo.ref(repo, "multi"), "--override-arch", "arm64")["Architecture"] == "arm64"
    assert skopeo.list_tags(repo) == ["multi"]

    # A client resolves the list to its platform on pull.
    podman("pull", "--tls-verify=false", "--arch", "arm64", f"{target}:multi")
    pulled = inspect(podman, f"{target}:multi")
    assert pulled["Architecture"] == "arm64"
    assert f"{target}@{platforms['arm64']}" in pulled["RepoDigests"]  # type: ignore[operator]
