"""Audit retention: the background job purges decisions older than CARGOHOLD_AUDIT_RETENTION_DAYS and
keeps the rest; 0 keeps everything (no purge job at all)."""

from __future__ import annotations

from pathlib import Path

from cargohold.app import BackgroundJobs, build_services
from cargohold.config import Config, load_config
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
