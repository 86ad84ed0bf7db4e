"""Fixtures for the policy suite: a registry of its own, root IAM/STS/ECR clients, docker.

The suite runs its own server (package scope) rather than the session's shared one: it creates
accounts, registry policies and audit trails that other suites should not see, and it reads that
server's data directory (`cargohold account create/audit --data-dir`) and its log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.clients.conftest import docker, dockerd  # the isolated dockerd and its CLI
from tests.policy.helpers import aws_client
from tests.support.server import ServerProcess, cleanup, temp_server

__all__ = ["docker", "dockerd"]


@pytest.fixture(scope="package")
def server() -> Iterator[ServerProcess]:
    """This package's registry (home account 000000000000), logging at debug level so that the
    secrets check in test_audit.py reads everything the server could say."""
    srv = temp_server(env={"CARGOHOLD_LOG_LEVEL": "debug"}).start()
    try:
        yield srv
    finally:
        cleanup(srv)


@pytest.fixture(scope="package")
def iam(server: ServerProcess) -> Any:
    return aws_client("iam", server)


@pytest.fixture(scope="package")
def sts(server: ServerProcess) -> Any:
    return aws_client("sts", server)


@pytest.fixture(scope="package")
def ecr(server: ServerProcess) -> Any:
    return aws_client("ecr", server)
