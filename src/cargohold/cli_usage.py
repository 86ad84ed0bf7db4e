"""`cargohold usage`: the usage and cost report on a data directory, beside a running server or not.

Read-only: it opens the metadata database, checks that its schema is current (it never
migrates; SQLite in WAL mode lets it read while a server writes) and builds the same document
as GET /api/usage. Only `--snapshot` writes: one storage sample for the current hour.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from typing import Any

import typer

from cargohold.config import Config
from cargohold.domain.cost import Prices
from cargohold.services.metering import LINE_KEYS, MAX_MONTHS, Metering, NetworkClassifier, UsageReports
from cargohold.storage.meta.metering import MeteringStore
from cargohold.storage.meta.store import MetadataStore


def _fail(message: str) -> typer.Exit:
    typer.echo(f"cargohold: {message}", err=True)
    return typer.Exit(2)


def open_read_only(cfg: Config) -> MetadataStore:
    """The metadata store, if the database exists at the current schema revision; nothing is created."""
    from alembic.config import Config as AlembicConfig
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from cargohold.storage.meta.engine import MIGRATIONS_DIR, make_engine, sqlite_url

    if not cfg.database_url and not (cfg.data_path / "meta.db").is_file():
        raise _fail(f"no registry data in {cfg.data_path} (give --data-dir, or start `cargohold serve` there first)")
    engine = make_engine(cfg.database_url or sqlite_url(cfg.data_path))
    alembic_cfg = AlembicConfig()
    alembic_cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(alembic_cfg).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        engine.dispose()
        raise _fail(f"the database schema is at revision {current}, this cargohold needs {head}: start "
                    "`cargohold serve` (or run `cargohold repos`) on it once to migrate")
    return MetadataStore(engine)


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def _money(amount: float) -> str:
    return f"${amount:.2f}" if amount == 0 or amount >= 0.01 else f"${amount:.6f}"


def _table(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=180)
    columns = [("repository", "left"), ("GB-months", "right"), ("stored now", "right"), ("shared", "right"),
               ("storage", "right"), ("pulled (region)", "right"), ("pulled (internet)", "right"),
               ("pushed", "right"), ("transfer", "right"), ("total", "right")]

    def cells(name: str, line: dict[str, Any]) -> list[str]:
        return [name, f"{line['storage_gb_months']:.6f}", _human(line["storage_bytes_now"]),
                _human(line["shared_bytes"]), _money(line["storage_cost"]), _human(line["pull_bytes_same_region"]),
                _human(line["pull_bytes_internet"]), _human(line["push_bytes"]), _money(line["transfer_cost"]),
                _money(line["total_cost"])]

    for month in doc["months"]:
        table = Table(title=f"Usage {month['month']} (account {doc['account_id']}, {doc['currency']})")
        for title, justify in columns:
            table.add_column(title, justify=justify)  # type: ignore[arg-type]
        for line in month["repositories"]:
            table.add_row(*cells(line["repository"], line))
        table.add_section()
        table.add_row(*cells("total", month["totals"]), style="bold")
        console.print(table)
    if doc["principals"]:
        table = Table(title="Transfer by principal (months shown)")
        for title in ("principal", "pulled", "pulled (internet)", "pushed"):
            table.add_column(title, justify="left" if title == "principal" else "right")
        for p in doc["principals"]:
            table.add_row(p["principal"] or "(unknown)", _human(p["pull_bytes"]), _human(p["pull_bytes_internet"]),
                          _human(p["push_bytes"]))
        console.print(table)
    prices = doc["prices"]
    console.print(f"Prices: {_money(prices['storage_gb_month'])} per GB-month stored, "
                  f"{_money(prices['transfer_internet_gb'])} per GB pulled from the internet "
                  "(same-region pulls and pushes are free).")
    projection = doc["projection"]
    console.print(f"At this rate, {projection['month']} costs about {_money(projection['total_cost'])}.")


def _csv(doc: dict[str, Any]) -> None:
    writer = csv.writer(sys.stdout)
    writer.writerow(["month", "repository", *LINE_KEYS])
    for month in doc["months"]:
        for line in month["repositories"]:
            writer.writerow([month["month"], line["repository"], *(line[k] for k in LINE_KEYS)])
        writer.writerow([month["month"], "(total)", *(month["totals"][k] for k in LINE_KEYS)])
    projection = doc["projection"]
    writer.writerow([projection["month"], "(projection)", *("" for _ in LINE_KEYS[:-1]), projection["total_cost"]])


def run_usage(cfg: Config, fmt: str, months: int, account: str | None, snapshot: bool) -> None:
    if fmt not in ("table", "json", "csv"):
        raise _fail(f"unknown format {fmt!r} (table, json or csv)")
    if not 1 <= months <= MAX_MONTHS:
        raise _fail(f"--months must be from 1 to {MAX_MONTHS}")
    account_id = account or cfg.account_id
    if not (len(account_id) == 12 and account_id.isdigit()):
        raise _fail("an account id is 12 digits")
    meta = open_read_only(cfg)
    try:
        store = MeteringStore(meta)
        if snapshot:
            Metering(store, NetworkClassifier(cfg.same_region_networks), time.time).snapshot()
        doc = UsageReports(store, Prices(cfg.price_storage_gb_month, cfg.price_transfer_internet_gb),
                           time.time).report(account_id, months)
    finally:
        meta.engine.dispose()
    if fmt == "json":
        typer.echo(json.dumps(doc, indent=2))
    elif fmt == "csv":
        _csv(doc)
    else:
        _table(doc)
