from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import ServerProcess, cleanup, temp_server


@pytest.fixture()
def two_workers() -> Iterator[ServerProcess]:
    """A fresh `cargohold serve --workers 2` of the test's own."""
    srv = temp_server(workers=2)
    try:
        yield srv.start()
    finally:
        cleanup(srv)


@pytest.fixture(scope="module")
def module_client(server: ServerProcess) -> Iterator[httpx.Client]:
    """An authenticated client for module-scoped fixtures (data shared by a module's tests)."""
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=60) as c:
        yield c
