from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import ServerProcess, cleanup, temp_server


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """One live registry (SQLite + filesystem, authentication on) shared by a test session."""
    srv = temp_server().start()
    try:
        yield srv
    finally:
        cleanup(srv)


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=60) as c:
        yield c
