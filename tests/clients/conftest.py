"""Fixtures for the real-client suite: an isolated dockerd, podman and skopeo with private state.

All of them talk to the session's `server` (tests/conftest.py) over plain HTTP on 127.0.0.1,
which docker, podman and skopeo accept without TLS (docker treats 127.0.0.0/8 as insecure;
podman and skopeo are told --tls-verify=false). Tests use unique repository names, so they
share the server and the daemon freely.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import Podman, Skopeo, missing_tools, unavailable
from tests.support.dockerd import DockerCli, DockerDaemon, docker_available
from tests.support.server import ServerProcess


@pytest.fixture(scope="session")
def dockerd() -> Iterator[DockerDaemon]:
    """One private dockerd (vfs, no networking, own containerd) for the whole session."""
    unavailable(docker_available())
    daemon = DockerDaemon().start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture()
def docker(dockerd: DockerDaemon, tmp_path: Path) -> DockerCli:
    """The docker CLI on the private daemon, with a DOCKER_CONFIG (logins) of this test's own."""
    return dockerd.cli(tmp_path / "docker-config")


@pytest.fixture()
def podman() -> Iterator[Podman]:
    unavailable(missing_tools("podman"))
    client = Podman()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture()
def skopeo(server: ServerProcess, tmp_path: Path) -> Skopeo:
    unavailable(missing_tools("skopeo"))
    base = tmp_path / "skopeo"
    base.mkdir()
    return Skopeo(server, base)
