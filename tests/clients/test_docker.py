"""The docker CLI and a real dockerd against cargohold: login, build, push, pull, layer reuse.

The daemon is private (tests/support/dockerd.py); docker treats 127.0.0.0/8 as an insecure
registry, so it speaks plain HTTP to the test server. Images are built FROM scratch with the
classic builder (nothing is run), from files made here, so every layer is new to the registry.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.support.clients import unique_repo
from tests.support.dockerd import DockerCli
from tests.support.server import ServerProcess

pytestmark = pytest.mark.clients

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_LAYER_LINE = re.compile(r"^([0-9a-f]{12}): (.+)$", re.MULTILINE)
_PUSHED = re.compile(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)")


def build_context(path: Path, big_bytes: int = 4 * 1024 * 1024) -> Path:
    """Three COPY layers: a small unique file, a few MB of random data, a directory of files."""
    path.mkdir(parents=True)
    (path / "hello.txt").write_text(f"hello from {path.name} {os.urandom(8).hex()}\n")
    (path / "big.bin").write_bytes(os.urandom(big_bytes))
    (path / "etc").mkdir()
    for i in range(3):
        (path / "etc" / f"conf{i}.txt").write_text(f"setting{i}={os.urandom(4).hex()}\n")
    (path / "Dockerfile").write_text(
        "FROM scratch\n"
        "COPY hello.txt /hello.txt\n"
        "COPY big.bin /data/big.bin\n"
        "COPY etc /etc/\n"
        'LABEL org.opencontainers.image.title="cargohold client test"\n'
        'CMD ["/nothing"]\n')
    return path


def login(docker: DockerCli, server: ServerProcess) -> None:
    out = docker("login", server.address, "-u", server.key_id, "--password-stdin", input=server.secret)
    assert "Login Succeeded" in out.stdout


def image_id(docker: DockerCli, ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def layer_statuses(push_output: str) -> dict[str, str]:
    """The last status docker printed for each layer of a push."""
    return dict(_LAYER_LINE.findall(push_output))


def pushed_digest(push_output: str) -> str:
    m = _PUSHED.search(push_output)
    assert m, push_output
    return m[1]


def registry_manifest(server: ServerProcess, repo: str, ref: str,
                      accept: str = "") -> tuple[str, dict[str, object]]:
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=30) as c:
        r = c.get(f"/v2/{repo}/manifests/{ref}",
                  headers={"Accept": accept or f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"})
    assert r.status_code == 200, r.text
    return r.headers["Docker-Content-Digest"], r.json()


def remove_images(docker: DockerCli, *refs: str) -> None:
    docker("rmi", "-f", *refs, check=False)


def test_login_build_push_pull_roundtrip(docker: DockerCli, server: ServerProcess, tmp_path: Path) -> None:
    repo = unique_repo("docker-roundtrip")
    ref = f"{server.address}/{repo}"
    ctx = build_context(tmp_path / "ctx")
    login(docker, server)
    docker("build", "-t", f"{ref}:v1", str(ctx))
    built_id = image_id(docker, f"{ref}:v1")
    digest = ""
    try:
        out = docker("push", f"{ref}:v1").stdout
        statuses = layer_statuses(out)
        assert len(statuses) == 3, out
        assert set(statuses.values()) == {"Pushed"}, out
        digest = pushed_digest(out)

        served_digest, manifest = registry_manifest(server, repo, "v1")
        assert served_digest == digest
        assert manifest["mediaType"] == DOCKER_MANIFEST
        assert len(manifest["layers"]) == 3  # type: ignore[arg-type]

        docker("rmi", f"{ref}:v1")
        assert docker("image", "inspect", f"{ref}:v1", check=False).returncode != 0

        out = docker("pull", f"{ref}:v1").stdout
        assert f"Digest: {digest}" in out
        assert image_id(docker, f"{ref}:v1") == built_id
        repo_digests = json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}",
                                         f"{ref}:v1").stdout)
        assert f"{ref}@{digest}" in repo_digests

        # The bytes survived the trip: copy a file out of a container that is never started.
        container = docker("create", f"{ref}:v1").stdout.strip()
        try:
            docker("cp", f"{container}:/data/big.bin", str(tmp_path / "big.out"))
            docker("cp", f"{container}:/hello.txt", str(tmp_path / "hello.out"))
        finally:
            docker("rm", "-f", container, check=False)
        assert (tmp_path / "big.out").read_bytes() == (ctx / "big.bin").read_bytes()
        assert (tmp_path / "hello.out").read_bytes() == (ctx / "hello.txt").read_bytes()

        # Pull by digest as well.
        docker("rmi", f"{ref}:v1")
        docker("pull", f"{ref}@{digest}")
        assert image_id(docker, f"{ref}@{digest}") == built_id
    finally:
        remove_images(docker, f"{ref}:v1", *([f"{ref}@{digest}"] if digest else []))


def test_second_tag_and_derived_image_reuse_layers(docker: DockerCli, server: ServerProcess,
                                                   tmp_path: Path) -> None:
    repo_a, repo_b = unique_repo("docker-base"), unique_repo("docker-derived")
    ref_a, ref_b = f"{server.address}/{repo_a}", f"{server.address}/{repo_b}"
    login(docker, server)
    docker("build", "-t", f"{ref_a}:v1", str(build_context(tmp_path / "base", big_bytes=2 * 1024 * 1024)))
    derived = tmp_path / "derived"
    derived.mkdir()
    (derived / "extra.txt").write_text(os.urandom(16).hex())
    (derived / "Dockerfile").write_text(f"FROM {ref_a}:v1\nCOPY extra.txt /extra.txt\n")
    docker("build", "-t", f"{ref_b}:v1", str(derived))
    try:
        first = docker("push", f"{ref_a}:v1").stdout
        assert set(layer_statuses(first).values()) == {"Pushed"}, first

        # The same image under a second tag: every layer is already there.
        docker("tag", f"{ref_a}:v1", f"{ref_a}:v2")
        second = docker("push", f"{ref_a}:v2").stdout
        statuses = layer_statuses(second)
        assert len(statuses) == 3 and set(statuses.values()) == {"Layer already exists"}, second
        assert pushed_digest(second) == pushed_digest(first)

        # A derived image in another repository: base layers are mounted, the new one pushed.
        third = docker("push", f"{ref_b}:v1").stdout
        values = sorted(layer_statuses(third).values())
        assert values == ["Mounted from " + repo_a] * 3 + ["Pushed"], third

        _, manifest_a = registry_manifest(server, repo_a, "v1")
        _, manifest_b = registry_manifest(server, repo_b, "v1")
        layers_a = [layer["digest"] for layer in manifest_a["layers"]]  # type: ignore[attr-defined]
        layers_b = [layer["digest"] for layer in manifest_b["layers"]]  # type: ignore[attr-defined]
        assert layers_b[:3] == layers_a and len(layers_b) == 4

        with httpx.Client(base_url=server.url, auth=server.auth, timeout=30) as c:
            assert c.get(f"/v2/{repo_a}/tags/list").json()["tags"] == ["v1", "v2"]
            # Mounted blobs are readable through the repository they were mounted into.
            r = c.head(f"/v2/{repo_b}/blobs/{layers_a[1]}")
            assert r.status_code == 200
    finally:
        remove_images(docker, f"{ref_b}:v1", f"{ref_a}:v2", f"{ref_a}:v1")


def test_wrong_password_is_refused(docker: DockerCli, server: ServerProcess, tmp_path: Path) -> None:
    bad = docker("login", server.address, "-u", server.key_id, "--password-stdin",
                 input="not-the-secret", check=False)
    assert bad.returncode != 0
    assert "401" in bad.stderr or "unauthorized" in bad.stderr.lower(), bad.stderr
    unknown = docker("login", server.address, "-u", "AKIANOSUCHKEY0000000", "--password-stdin",
                     input=server.secret, check=False)
    assert unknown.returncode != 0
    config = json.loads((docker.config_dir / "config.json").read_text())
    assert server.address not in config.get("auths", {})

    # Without stored credentials a push is refused, and nothing lands in the registry.
    repo = unique_repo("docker-noauth")
    ref = f"{server.address}/{repo}:v1"
    docker("build", "-t", ref, str(build_context(tmp_path / "ctx", big_bytes=1024)))
    try:
        started = time.monotonic()
        push = docker("push", ref, check=False)
        assert push.returncode != 0
        assert "no basic auth credentials" in push.stderr or "unauthorized" in push.stderr.lower(), push.stderr
        # Refused at once: dockerd retries (for ~50 s) only errors it takes for transient ones.
        assert "Retrying" not in push.stdout, push.stdout
        assert time.monotonic() - started < 20
    finally:
        remove_images(docker, ref)
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=30) as c:
        assert c.get(f"/v2/{repo}/tags/list").status_code == 404


def test_manifest_list_with_docker_manifest(docker: DockerCli, server: ServerProcess, tmp_path: Path) -> None:
    """`docker manifest create/annotate/push` (the CLI's own registry client) and a platform pull."""
    repo = unique_repo("docker-list")
    ref = f"{server.address}/{repo}"
    login(docker, server)
    built: dict[str, str] = {}
    for arch in ("amd64", "arm64"):
        ctx = tmp_path / arch
        ctx.mkdir()
        (ctx / "arch.txt").write_text(f"{arch} {os.urandom(8).hex()}\n")
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY arch.txt /arch.txt\n")
        docker("build", "-t", f"{ref}:{arch}", str(ctx))
        built[arch] = image_id(docker, f"{ref}:{arch}")
        docker("push", f"{ref}:{arch}")
    try:
        docker("manifest", "create", "--insecure", f"{ref}:list", f"{ref}:amd64", f"{ref}:arm64")
        # The classic builder stamps the daemon's platform into both configs; the list says otherwise.
        docker("manifest", "annotate", "--arch", "arm64", f"{ref}:list", f"{ref}:arm64")
        pushed = docker("manifest", "push", "--insecure", f"{ref}:list").stdout.strip()
        assert pushed.startswith("sha256:")

        served_digest, listing = registry_manifest(server, repo, "list", accept=DOCKER_LIST)
        assert served_digest == pushed
        assert listing["mediaType"] == DOCKER_LIST
        platforms = {m["platform"]["architecture"]: m["digest"]  # type: ignore[index]
                     for m in listing["manifests"]}  # type: ignore[attr-defined]
        assert sorted(platforms) == ["amd64", "arm64"]
        inspected = json.loads(docker("manifest", "inspect", "--insecure", f"{ref}:list").stdout)
        assert {m["digest"] for m in inspected["manifests"]} == set(platforms.values())

        docker("rmi", "-f", f"{ref}:amd64", f"{ref}:arm64")
        docker("pull", "--platform", "linux/arm64", f"{ref}:list")
        assert image_id(docker, f"{ref}:list") == built["arm64"]
    finally:
        remove_images(docker, f"{ref}:list", f"{ref}:amd64", f"{ref}:arm64")
