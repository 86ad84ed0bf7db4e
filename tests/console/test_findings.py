"""Scan status and findings in the console, from a real scan (the scan suite's images and OSV records).

This module runs a registry of its own: it imports a vulnerability database into it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.api.helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, digest, encode, push_blob, put_manifest
from tests.console.conftest import aws, screenshot, sign_in
from tests.scan import builders as b
from tests.support.server import ServerProcess, cleanup, temp_server


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    srv = temp_server().start()
    try:
        yield srv
    finally:
        cleanup(srv)


@dataclass(frozen=True)
class Scanned:
    repo: str
    digest: str
    plain: str  # an Alpine image in the same repository, pushed with scan on push off


def wait_scan(ecr: Any, repo: str, image: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            out = ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageDigest": image})
            if out["imageScanStatus"]["status"] != "IN_PROGRESS":
                assert out["imageScanStatus"]["status"] == "COMPLETE", out
                return
        except ecr.exceptions.ScanNotFoundException:
            pass
        assert time.monotonic() < deadline, "the scan did not finish"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def scanned(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Scanned:
    osv = b.write_osv_dir(tmp_path_factory.mktemp("osv"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}
    proc = subprocess.run([sys.executable, "-m", "cargohold", "vulndb", "import", str(osv), "--data-dir",
                           str(server.data_dir)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    repo = f"console/scanned-{uuid.uuid4().hex[:8]}"
    ecr = aws("ecr", server)
    ecr.create_repository(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True})
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=60) as v2:
        debian = push_layers(v2, repo, "bookworm", b.debian_layers())
        ecr.put_image_scanning_configuration(repositoryName=repo, imageScanningConfiguration={"scanOnPush": False})
        alpine = push_layers(v2, repo, "alpine", b.alpine_layers())
    wait_scan(ecr, repo, debian)
    return Scanned(repo, debian, alpine)


def push_layers(v2: httpx.Client, repo: str, tag: str, layers: list[bytes]) -> str:
    config = encode({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "t": tag})
    push_blob(v2, repo, config)
    for layer in layers:
        push_blob(v2, repo, layer)
    body = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": len(config)},
                   "layers": [{"mediaType": OCI_LAYER, "digest": digest(x), "size": len(x)} for x in layers]})
    assert put_manifest(v2, repo, tag, body).status_code == 201
    return digest(body)


def test_images_table_shows_scan_status_and_severity_counts(page: Any, server: ServerProcess,
                                                            scanned: Scanned) -> None:
    sign_in(page, server.key_id, server.secret, f"/console/repositories/{scanned.repo}")
    images = page.get_by_role("table", name="Images")
    row = images.get_by_role("row").filter(has_text="bookworm")
    expect(row).to_contain_text("Complete")
    expect(row).to_contain_text("2 critical")
    expect(row).to_contain_text("3 high")
    expect(images.get_by_role("row").filter(has_text="alpine")).to_contain_text("Not scanned")


def test_image_page_lists_findings(page: Any, server: ServerProcess, scanned: Scanned) -> None:
    sign_in(page, server.key_id, server.secret, f"/console/repositories/{scanned.repo}/-/images/{scanned.digest}")
    expect(page.get_by_role("list", name="Findings by severity")).to_contain_text("2 critical")
    findings = page.get_by_role("table", name="Vulnerabilities")
    log4shell = findings.get_by_role("row").filter(has_text="CVE-2021-44228")
    expect(log4shell).to_contain_text("critical")
    expect(log4shell).to_contain_text("org.apache.logging.log4j:log4j-core 2.14.1")
    expect(log4shell).to_contain_text("2.15.0")  # fixed in
    expect(log4shell).to_contain_text("Log4Shell")
    expect(findings.get_by_role("row")).to_have_count(1 + len(b.DEBIAN_EXPECTED))
    screenshot(page, "image-findings")


def test_scan_now_from_the_image_page(page: Any, server: ServerProcess, scanned: Scanned) -> None:
    sign_in(page, server.key_id, server.secret, f"/console/repositories/{scanned.repo}/-/images/{scanned.plain}")
    section = page.get_by_role("main")
    expect(section).to_contain_text("Not scanned.")
    page.get_by_role("button", name="Scan now").click()
    expect(page.get_by_role("status").first).to_contain_text("The scan has started")
    wait_scan(aws("ecr", server), scanned.repo, scanned.plain)
    page.reload()
    expect(section).to_contain_text("Scan status: Complete")
    findings = page.get_by_role("table", name="Vulnerabilities")
    expect(findings.get_by_role("row")).to_have_count(1 + len(b.ALPINE_EXPECTED))
    expect(findings).to_contain_text("CVE-2024-0020")
