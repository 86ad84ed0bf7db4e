from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.ecr.helpers import ecr_client, unique_name, v2_client
from tests.support.server import ServerProcess


@pytest.fixture(scope="session")
def ecr(server: ServerProcess) -> Any:
    """A boto3 ECR client with the root credentials."""
    return ecr_client(server)


@pytest.fixture()
def repo(ecr: Any, request: pytest.FixtureRequest) -> str:
    """A freshly created, empty repository of this test's own."""
    name = unique_name(request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:30])
    ecr.create_repository(repositoryName=name)
    return name


@pytest.fixture()
def v2(server: ServerProcess) -> Iterator[httpx.Client]:
    with v2_client(server) as client:
        yield client
