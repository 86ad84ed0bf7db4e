"""`cargohold usage` reads and never writes or migrates behind a server's back."""

from __future__ import annotations

import json
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from sqlalchemy import func, select
from typer.testing import CliRunner

from cargohold.cli import app
from cargohold.storage.meta import schema as s
from cargohold.storage.meta.engine import MIGRATIONS_DIR, make_engine, sqlite_url
from tests.usage.conftest import Registry

runner = CliRunner()


def _state(registry: Registry) -> tuple[list[int], str | None]:
    """Row counts of the tables the CLI could touch, and the schema revision."""
    with registry.services.meta.read() as conn:
        counts = [int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                  for t in (s.usage_storage, s.usage_transfer, s.repositories, s.blobs)]
        return counts, MigrationContext.configure(conn).get_current_revision()


def test_usage_reads_only(registry: Registry) -> None:
    digest = registry.push_blob("cli", b"c" * 5000)
    registry.client("8.8.8.8").get(f"/v2/cli/blobs/{digest}")
    assert registry.services.metering is not None
    registry.services.metering.flush()
    data_dir = str(registry.services.config.data_path)
    before = _state(registry)
    for fmt in ("json", "csv", "table"):
        result = runner.invoke(app, ["usage", "--format", fmt, "--months", "2", "--data-dir", data_dir])
        assert result.exit_code == 0, result.output
    doc = json.loads(runner.invoke(app, ["usage", "--format", "json", "--data-dir", data_dir]).output)
    assert doc["currency"] == "USD" and len(doc["months"]) == 3
    assert doc["months"][-1]["totals"]["storage_bytes_now"] == 5000  # live, whatever the clock
    assert _state(registry) == before

    result = runner.invoke(app, ["usage", "--snapshot", "--data-dir", data_dir])  # opt-in: one sample
    assert result.exit_code == 0, result.output
    assert _state(registry)[0][0] == before[0][0] + 1


def test_usage_refuses_what_it_would_have_to_create_or_migrate(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["usage", "--data-dir", str(missing)])
    assert result.exit_code == 2 and "no registry data" in result.output
    assert not missing.exists()

    old = tmp_path / "old"
    old.mkdir()
    engine = make_engine(sqlite_url(old))
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    result = runner.invoke(app, ["usage", "--data-dir", str(old)])
    assert result.exit_code == 2 and "revision 0003" in result.output
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0003"
    engine.dispose()


def test_usage_bad_options(registry: Registry) -> None:
    data_dir = str(registry.services.config.data_path)
    assert runner.invoke(app, ["usage", "--format", "xml", "--data-dir", data_dir]).exit_code == 2
    assert runner.invoke(app, ["usage", "--months", "0", "--data-dir", data_dir]).exit_code == 2
    assert runner.invoke(app, ["usage", "--account", "12", "--data-dir", data_dir]).exit_code == 2
