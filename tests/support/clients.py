"""Running real registry clients (skopeo, podman, docker) from tests.

Every client gets private state: podman its own storage root, run root and config files; skopeo
and podman a private auth file (REGISTRY_AUTH_FILE). Nothing reads or writes the user's
~/.docker, ~/.config/containers or /run/containers.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.dockerd import mounts_under
from tests.support.server import ServerProcess

DEFAULT_TIMEOUT = 180.0


class ClientError(RuntimeError):
    def __init__(self, cmd: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        self.proc = proc
        super().__init__(f"{shlex.join(cmd)} exited {proc.returncode}:\n"
                         f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")


def run(cmd: list[str], *, env: dict[str, str] | None = None, check: bool = True,
        input: str | None = None, timeout: float = DEFAULT_TIMEOUT,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=env, input=input, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise ClientError(cmd, proc)
    return proc


REQUIRE_ENV = "CARGOHOLD_REQUIRE_CLIENTS"


def missing_tools(*tools: str) -> str | None:
    """A skip reason naming the tools that are not installed, or None."""
    missing = [t for t in tools if shutil.which(t) is None]
    return f"not installed: {', '.join(missing)}" if missing else None


def unavailable(reason: str | None) -> None:
    """Skip the test for `reason` (when not None); fail instead when CARGOHOLD_REQUIRE_CLIENTS=1."""
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason} (and {REQUIRE_ENV} is set)")
    pytest.skip(reason)


def unique_repo(prefix: str) -> str:
    """A repository name no other test (or earlier run against the same server) uses."""
    return f"clients/{prefix}-{uuid.uuid4().hex[:10]}"


def _isolated_env(base: Path) -> dict[str, str]:
    base.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    auth = base / "auth.json"
    if not auth.exists():
        auth.write_text('{"auths": {}}\n')
    env["REGISTRY_AUTH_FILE"] = str(auth)
    env["XDG_RUNTIME_DIR"] = str(base / "xdg-run")
    env["XDG_CONFIG_HOME"] = str(base / "xdg-config")
    env["XDG_DATA_HOME"] = str(base / "xdg-data")
    env["TMPDIR"] = str(base / "tmp")
    for key in ("xdg-run", "xdg-config", "xdg-data", "tmp"):
        (base / key).mkdir(parents=True, exist_ok=True)
    (base / "xdg-run").chmod(0o700)
    return env


class Skopeo:
    """skopeo with a private auth file; credentials are passed per call (--src/--dest-creds)."""

    def __init__(self, server: ServerProcess, base: Path) -> None:
        self.server = server
        self.base = base
        self.env = _isolated_env(base)

    @property
    def creds(self) -> str:
        return f"{self.server.key_id}:{self.server.secret}"

    def ref(self, repo: str, tag_or_digest: str) -> str:
        sep = "@" if ":" in tag_or_digest else ":"
        return f"docker://{self.server.address}/{repo}{sep}{tag_or_digest}"

    def __call__(self, *args: str, check: bool = True, timeout: float = DEFAULT_TIMEOUT
                 ) -> subprocess.CompletedProcess[str]:
        return run(["skopeo", *args], env=self.env, check=check, timeout=timeout)

    def copy(self, src: str, dest: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        args = ["copy", "--retry-times", "0"]
        if src.startswith("docker://"):
            args += ["--src-tls-verify=false", "--src-creds", self.creds]
        if dest.startswith("docker://"):
            args += ["--dest-tls-verify=false", "--dest-creds", self.creds]
        return self(*args, *extra, src, dest, check=check)

    def inspect_raw(self, ref: str) -> bytes:
        # Bytes, not text: the exact manifest as served, so that it can be digested.
        proc = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", self.creds, ref],
                              env=self.env, capture_output=True, timeout=DEFAULT_TIMEOUT,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"skopeo inspect --raw {ref} failed:\n{proc.stderr.decode(errors='replace')}")
        return proc.stdout

    def inspect(self, ref: str, *extra: str) -> dict[str, Any]:
        proc = self("inspect", "--tls-verify=false", "--creds", self.creds, *extra, ref)
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    def list_tags(self, repo: str) -> list[str]:
        proc = self("list-tags", "--tls-verify=false", "--creds", self.creds,
                    f"docker://{self.server.address}/{repo}")
        return sorted(json.loads(proc.stdout)["Tags"])

    def delete(self, ref: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self("delete", "--tls-verify=false", "--creds", self.creds, ref, check=check)


class Podman:
    """podman (and its buildah) on a private vfs store: --root, --runroot, --tmpdir, own config files."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = base or Path(tempfile.mkdtemp(prefix="chp-", dir="/tmp"))
        self.root = self.base / "root"
        self.runroot = self.base / "run"
        self.tmpdir = self.base / "libpod-tmp"
        for d in (self.root, self.runroot, self.tmpdir):
            d.mkdir(parents=True, exist_ok=True)
        self.env = _isolated_env(self.base)
        storage_conf = self.base / "storage.conf"
        storage_conf.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{self.runroot}"\n'
                                f'graphroot = "{self.root}"\n')
        containers_conf = self.base / "containers.conf"
        containers_conf.write_text('[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n'
                                   f'events_logfile_path = "{self.base / "events.log"}"\n')
        self.env["CONTAINERS_STORAGE_CONF"] = str(storage_conf)
        self.env["CONTAINERS_CONF"] = str(containers_conf)
        self.env["BUILDAH_ISOLATION"] = "chroot"

    @property
    def global_args(self) -> list[str]:
        return ["--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", "vfs",
                "--tmpdir", str(self.tmpdir), "--cgroup-manager", "cgroupfs", "--events-backend", "file"]

    def __call__(self, *args: str, check: bool = True, input: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, cwd: Path | None = None
                 ) -> subprocess.CompletedProcess[str]:
        return run(["podman", *self.global_args, *args], env=self.env, check=check, input=input,
                   timeout=timeout, cwd=cwd)

    def close(self) -> None:
        # Not `podman system reset`: as root it also drops networks from /etc/containers. vfs keeps
        # plain directories, so removing the tree is enough once nothing is mounted below it.
        for mount in mounts_under(self.base):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
