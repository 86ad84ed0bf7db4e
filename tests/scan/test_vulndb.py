"""The OSV index: imports from directories and zips, merging, withdrawal, atomic swaps, URL refresh."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.app import build_services
from cargohold.config import Config
from cargohold.services.scanning import feeds
from cargohold.storage.vulndb import VulnIndex
from tests.scan import builders as b


def _record(ident: str, name: str, modified: str, **extra: object) -> dict[str, object]:
    return {"id": ident, "modified": modified, "affected": [{"package": {"ecosystem": "PyPI", "name": name},
                                                             "ranges": []}], **extra}


def test_import_directory_and_zip_then_merge(tmp_path: Path) -> None:
    index = VulnIndex(tmp_path / "vulndb")
    with index.snapshot() as empty:
        assert empty.generation == "" and empty.lookup("PyPI", "x") == [] and empty.updated_at is None
    b.write_osv_dir(tmp_path / "osv", [_record("A-1", "Foo_Bar", "2024-01-01T00:00:00Z")])
    (tmp_path / "osv" / "broken.json").write_text("{not json")
    paths = [tmp_path / "osv"]
    first = index.import_records(feeds.records(paths))
    assert (first.added, first.skipped, first.total, first.updated_at) == (1, 1, 1, "2024-01-01T00:00:00Z")
    zipped = b.write_osv_zip(tmp_path / "all.zip", [_record("B-1", "other", "2024-05-01T12:30:00.123456Z"),
                                                    _record("A-1", "foo-bar", "2024-02-01T00:00:00Z")])
    assert feeds.count([zipped]) == 2
    with index.snapshot() as old:  # a reader on the old generation keeps working through the swap
        second = index.import_records(feeds.records([zipped]))
        assert [r["id"] for r in old.lookup("PyPI", "foo-bar")] == ["A-1"]
        assert old.count() == 1
    assert second.total == 2 and second.updated_at == "2024-05-01T12:30:00Z"
    with index.snapshot() as snap:
        assert snap.generation == second.generation != first.generation
        assert snap.lookup("PyPI", "foo-bar")[0]["modified"] == "2024-02-01T00:00:00Z"  # updated, not duplicated
        assert snap.updated_at_ms == 1714566600000
    gone = _record("B-1", "other", "2024-06-01T00:00:00Z", withdrawn="2024-06-01T00:00:00Z")
    withdrawn = index.import_records([gone])
    assert withdrawn.withdrawn == 1 and withdrawn.total == 1
    replaced = index.import_records([_record("C-1", "c", "2023-01-01T00:00:00Z")], replace=True)
    assert replaced.total == 1
    files = sorted(p.name for p in (tmp_path / "vulndb").glob("osv-*"))
    assert len(files) <= 2  # the live generation and the one before it


@pytest.fixture()
def zip_server(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server serving an OSV all.zip (no outside network in tests)."""
    root = tmp_path / "www"
    root.mkdir()
    b.write_osv_zip(root / "all.zip", b.osv_records())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/all.zip"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_refresh_from_url(tmp_path: Path, zip_server: str) -> None:
    services = build_services(Config(data_dir=str(tmp_path / "data"), vulndb_urls=[zip_server]))
    try:
        scanner = services.scans.scanner  # type: ignore[union-attr]
        report = scanner.refresh(services.config.vulndb_urls)
        assert report is not None and report.total == len(b.osv_records())
        assert not list((scanner.index.root / "downloads").glob("*"))  # the download is cleaned up
        with pytest.raises(ValueError, match="unsupported URL scheme"):
            scanner.refresh(["ftp://127.0.0.1/all.zip"])
        with pytest.raises(OSError):
            scanner.refresh([zip_server.replace("all.zip", "missing.zip")])
        with scanner.index.snapshot() as snap:
            assert snap.generation == report.generation  # a failed refresh changes nothing
    finally:
        services.meta.engine.dispose()
