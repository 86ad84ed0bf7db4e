"""The metering store on SQLite and PostgreSQL: counters add up, storage figures split shared blobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cargohold.domain.cost import Prices
from cargohold.services.metering import Metering, NetworkClassifier, UsageReports
from cargohold.storage.meta.engine import make_engine, migrate, sqlite_url
from cargohold.storage.meta.metering import MeteringStore, StorageFigures, TransferRow
from cargohold.storage.meta.store import MetadataStore
from tests.contract.conftest import postgres_server  # noqa: F401 - the session's PostgreSQL fixture
from tests.support.postgres import PostgresServer
from tests.usage.conftest import ms

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
HOUR = ms("2024-03-01T00:00")


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
    eng = make_engine(url)
    migrate(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def test_counters_add_up(engine: Engine) -> None:
    store = MeteringStore(MetadataStore(engine))
    row = TransferRow(HOUR, "000000000000", "app", "arn:aws:iam::000000000000:root", "pull", "internet", 100, 1)
    store.add_transfer([row])
    store.add_transfer([row, TransferRow(HOUR, "000000000000", "app", "", "push", "same_region", 7, 1)])
    store.add_transfer([])
    rows = sorted(store.transfer("000000000000", HOUR, HOUR + 1), key=lambda r: r.direction)
    assert [(r.direction, r.bytes, r.requests) for r in rows] == [("pull", 200, 2), ("push", 7, 1)]
    assert store.transfer("111111111111", HOUR, HOUR + 1) == []
    assert store.transfer("000000000000", HOUR + 1, HOUR + 2) == []


def test_storage_figures_and_samples(engine: Engine) -> None:
    meta = MetadataStore(engine)
    store = MeteringStore(meta)
    a = meta.create_repository("000000000000", "a", 0)
    b = meta.create_repository("000000000000", "b", 0)
    c = meta.create_repository("111111111111", "c", 0)  # sharing crosses accounts too
    meta.link_blob(a.id, "sha256:" + "1" * 64, 10, 0)
    assert meta.mount_blob(a.id, b.id, "sha256:" + "1" * 64, 0) == 10
    assert meta.mount_blob(a.id, c.id, "sha256:" + "1" * 64, 0) == 10
    meta.link_blob(b.id, "sha256:" + "2" * 64, 5, 0)
    now = store.storage_now()
    assert now[("000000000000", "a")] == StorageFigures(4, 10, 10)
    assert now[("000000000000", "b")] == StorageFigures(3 + 5, 15, 10)
    assert now[("111111111111", "c")] == StorageFigures(3, 10, 10)

    metering = Metering(store, NetworkClassifier(), lambda: HOUR / 1000)
    assert metering.snapshot(HOUR + 60_000) == 3
    assert metering.snapshot(HOUR + 3_600_000) == 0
    meta.delete_repository(c.id)
    assert metering.snapshot(HOUR + 7_200_000) == 3  # c gone (zero), a and b now split in two
    latest = store.latest_samples()
    assert latest[("111111111111", "c")].figures == StorageFigures(0, 0, 0)
    assert latest[("000000000000", "a")].hour == HOUR + 7_200_000
    series = store.samples("000000000000", HOUR + 3_600_000, HOUR + 10 * 3_600_000)
    assert [(x.hour, x.figures.billed_bytes) for x in series["a"]] == [(HOUR, 4), (HOUR + 7_200_000, 5)]

    report = UsageReports(store, Prices(), lambda: 0.0).report("000000000000", 1, HOUR + 4 * 3_600_000)
    lines = {x["repository"]: x for x in report["months"][0]["repositories"]}
    # a: 4 bytes for hours 0-1, 5 bytes for hours 2-3 = 18 byte-hours of 744 in March.
    assert lines["a"]["storage_gb_months"] == pytest.approx(18 / (744 * (1 << 30)), rel=1e-12)
    assert lines["a"]["storage_bytes_now"] == 5 and lines["b"]["storage_bytes_now"] == 10
