"""The audit trail's upkeep: the background job purges decisions older than
CARGOHOLD_AUDIT_RETENTION_DAYS and keeps the rest (0 keeps everything); decisions waiting for the
writer are bounded and written in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargohold.app import BackgroundJobs, build_services
from cargohold.config import Config, load_config
from cargohold.services import authorization
from cargohold.storage.meta.iam import AuditEvent

DAY_MS = 86_400_000
NOW = 1_900_000_000.0


def _event(at_ms: int, n: int) -> AuditEvent:
    return AuditEvent(at_ms, f"r{n}", "arn:aws:iam::123456789012:root", "ecr:BatchGetImage",
                      "arn:aws:ecr:us-east-1:123456789012:repository/app", "127.0.0.1", "", True, "allowed",
                      None, None)


def test_purge_job_drops_only_what_is_past_retention(tmp_path: Path) -> None:
    services = build_services(Config(data_dir=str(tmp_path / "d"), audit_retention_days=30, gc_interval=0,
                                     lifecycle_interval=0), clock=lambda: NOW)
    try:
        now_ms = int(NOW * 1000)
        store = services.iam.store
        store.record([_event(now_ms - 31 * DAY_MS, 1), _event(now_ms - 30 * DAY_MS - 1, 2),
                      _event(now_ms - 30 * DAY_MS + 1000, 3), _event(now_ms - 1000, 4)])
        jobs = BackgroundJobs(services)
        assert jobs.intervals == {"audit": 3600}  # the only periodic job of this configuration
        jobs.run("audit")
        assert [e.request_id for e in store.events(limit=10)] == ["r4", "r3"]
        jobs.run("audit")  # nothing more to purge
        assert len(store.events(limit=10)) == 2
    finally:
        services.meta.engine.dispose()


def test_zero_retention_keeps_everything(tmp_path: Path) -> None:
    config = load_config(environ={"CARGOHOLD_AUDIT_RETENTION_DAYS": "0", "CARGOHOLD_DATA_DIR": str(tmp_path / "d")})
    assert config.audit_retention_days == 0
    services = build_services(config, clock=lambda: NOW)
    try:
        assert "audit" not in BackgroundJobs(services).intervals  # no purge job at all
        assert set(BackgroundJobs(services).intervals) == {"gc", "lifecycle"}
    finally:
        services.meta.engine.dispose()


class _Recorder:
    def __init__(self) -> None:
        self.batches: list[list[AuditEvent]] = []

    def record(self, events: list[AuditEvent]) -> None:
        self.batches.append(list(events))


def test_pending_decisions_are_bounded_and_written_in_order(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(authorization, "MAX_PENDING", 3)
    store = _Recorder()
    log = authorization.AuditLog(store, flush_seconds=3600)  # type: ignore[arg-type]
    for n in range(5):
        log.add(_event(n, n))
    assert "audit queue full" in caplog.text  # the two beyond the bound are dropped, and said so
    log.flush()
    log.flush()  # nothing pending: no empty batch written
    assert [[e.request_id for e in batch] for batch in store.batches] == [["r0", "r1", "r2"]]
    log.add(_event(9, 9))  # room again after a flush
    log.flush()
    assert store.batches[-1][0].request_id == "r9"
