"""The Alembic migrations build exactly the schema declared in schema.py, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from cargohold.storage.meta.engine import MIGRATIONS_DIR, make_engine, migrate, sqlite_url
from cargohold.storage.meta.schema import metadata
from tests.support.postgres import PostgresServer

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
    eng = make_engine(url)
    try:
        yield eng
    finally:
        eng.dispose()


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "compare_server_default": True})
        return list(compare_metadata(context, metadata))


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def test_single_head() -> None:
    script = ScriptDirectory.from_config(_config())
    assert len(script.get_heads()) == 1


def test_migrations_match_schema(engine: Engine) -> None:
    migrate(engine)
    assert _diff(engine) == []
    head = ScriptDirectory.from_config(_config()).get_current_head()
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head
    migrate(engine)  # running again is a no-op
    assert _diff(engine) == []


def test_downgrade_to_base_and_up_again(engine: Engine) -> None:
    migrate(engine)
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(engine)
    assert _diff(engine) == []
