"""Fixtures shared by the storage contract suites.

PostgreSQL is never skipped: when its binaries are missing the tests that need it fail with a
message saying how to install them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from cargohold.storage.meta.engine import make_engine, migrate, sqlite_url
from tests.support.postgres import PostgresServer, PostgresUnavailable


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole session (stopped and deleted at the end)."""
    problem = None
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        problem = str(exc)
    if problem is not None:
        pytest.fail(f"PostgreSQL is needed for the contract tests and could not be started: {problem}",
                    pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL (postgresql://...) of an empty database on the session's server."""
    return postgres_server.create_database("cargohold")


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A migrated metadata database per test module, on each backend (the contract suites share it)."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path_factory.mktemp("meta"))
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
    eng = make_engine(url)
    migrate(eng)
    try:
        yield eng
    finally:
        eng.dispose()
