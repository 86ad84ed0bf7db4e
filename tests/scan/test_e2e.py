"""End to end on a live server: scan on push over /v2, findings over boto3 and the AWS CLI, manual and
continuous scans, registry scanning settings, SBOM downloads, failures, and `vulndb import` while serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import OCI_CONFIG, OCI_MANIFEST, digest, encode, push_blob, put_manifest
from tests.ecr.helpers import ecr_client, raises
from tests.scan import builders as b
from tests.support.server import ServerProcess, cleanup, temp_server

AWS = "/usr/bin/aws"
LAYER_LIMIT = 4 << 20
LAYER_TYPES = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd", "tar": "application/vnd.oci.image.layer.v1.tar"}


def _kind(layer: bytes) -> str:
    return "gzip" if layer[:2] == b"\x1f\x8b" else "zstd" if layer[:4] == b"\x28\xb5\x2f\xfd" else "tar"


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    server = temp_server(env={"CARGOHOLD_SCAN_MAX_LAYER_BYTES": str(LAYER_LIMIT), "CARGOHOLD_SCAN_WORKERS": "2"})
    server.start()
    try:
        yield server
    finally:
        cleanup(server)


@pytest.fixture(scope="module")
def ecr(srv: ServerProcess) -> Any:
    return ecr_client(srv)


@pytest.fixture(scope="module")
def v2(srv: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, auth=srv.auth, timeout=60) as client:
        yield client


def cli(srv: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}
    return subprocess.run([sys.executable, "-m", "cargohold", *args, "--data-dir", str(srv.data_dir)],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def vulndb(srv: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture records, imported with the CLI while the server runs."""
    root = b.write_osv_dir(tmp_path_factory.mktemp("osv"))
    proc = cli(srv, "vulndb", "import", str(root))
    assert proc.returncode == 0, proc.stderr
    assert f"Imported {len(b.osv_records())} records" in proc.stdout, proc.stdout
    assert httpx.get(srv.url + "/healthz").status_code == 200
    return root


def push(v2: httpx.Client, repo: str, layers: list[bytes], tag: str) -> str:
    config = encode({"architecture": "amd64", "os": "linux", "nonce": uuid.uuid4().hex,
                     "rootfs": {"type": "layers", "diff_ids": []}})
    push_blob(v2, repo, config)
    for layer in layers:
        push_blob(v2, repo, layer)
    body = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": len(config)},
                   "layers": [{"mediaType": LAYER_TYPES[_kind(x)], "digest": digest(x), "size": len(x)}
                              for x in layers]})
    started = time.monotonic()
    r = put_manifest(v2, repo, tag, body)
    assert r.status_code == 201, r.text
    assert time.monotonic() - started < 5  # the scan never holds up the push
    return digest(body)


def wait_scan(ecr: Any, repo: str, image_id: dict[str, str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            out: dict[str, Any] = ecr.describe_image_scan_findings(repositoryName=repo, imageId=image_id)
            if out["imageScanStatus"]["status"] != "IN_PROGRESS":
                return out
        except ecr.exceptions.ScanNotFoundException:
            pass
        assert time.monotonic() < deadline, "scan did not finish"
        time.sleep(0.1)


def all_findings(ecr: Any, repo: str, image_id: dict[str, str]) -> list[dict[str, Any]]:
    pages = ecr.get_paginator("describe_image_scan_findings").paginate(
        repositoryName=repo, imageId=image_id, PaginationConfig={"PageSize": 4})
    return [f for page in pages for f in page["imageScanFindings"]["findings"]]


def pairs(findings: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(f["name"], {a["key"]: a["value"] for a in f["attributes"]}["package_name"]) for f in findings}


def test_scan_on_push_over_v2(srv: ServerProcess, ecr: Any, v2: httpx.Client, vulndb: Path) -> None:
    repo = f"scan/debian-{uuid.uuid4().hex[:8]}"
    ecr.create_repository(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True})
    image = push(v2, repo, b.debian_layers(), "v1")
    out = wait_scan(ecr, repo, {"imageTag": "v1"})
    assert out["imageScanStatus"] == {"status": "COMPLETE", "description": "The scan was completed successfully."}
    assert out["imageId"] == {"imageDigest": image, "imageTag": "v1"}
    result = out["imageScanFindings"]
    assert result["vulnerabilitySourceUpdatedAt"].isoformat().startswith("2024-03-01T10:00:00")
    findings = all_findings(ecr, repo, {"imageDigest": image})
    assert pairs(findings) == b.DEBIAN_EXPECTED
    assert result["findingSeverityCounts"] == {"CRITICAL": 2, "HIGH": 3, "MEDIUM": 2, "LOW": 1, "UNDEFINED": 3}
    log4j = next(f for f in findings if f["name"] == "CVE-2021-44228")
    attrs = {a["key"]: a["value"] for a in log4j["attributes"]}
    assert log4j["severity"] == "CRITICAL" and log4j["description"] == "Log4Shell"
    assert attrs["package_version"] == "2.14.1" and attrs["fixed_version"] == "2.15.0"
    assert attrs["CVSS3_SCORE"] == "9.8" and attrs["CVSS3_VECTOR"].startswith("CVSS:3.1/")
    openssl = next(f for f in findings if f["name"] == "CVE-2024-0001")
    assert {a["key"]: a["value"] for a in openssl["attributes"]}["binary_packages"] == "libssl3"
    assert openssl["uri"] == "https://security-tracker.debian.org/tracker/DSA-5001-1"
    page = ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageTag": "v1"}, maxResults=5)
    assert len(page["imageScanFindings"]["findings"]) == 5 and page["nextToken"]
    detail = ecr.describe_images(repositoryName=repo)["imageDetails"][0]
    assert detail["imageScanStatus"]["status"] == "COMPLETE"
    assert detail["imageScanFindingsSummary"]["findingSeverityCounts"]["CRITICAL"] == 2
    # The SBOM: over HTTP (authenticated like /v2) and from the CLI.
    sbom = v2.get(f"/sbom/{repo}@{image}")
    assert sbom.status_code == 200 and sbom.headers["content-type"].startswith("application/vnd.cyclonedx+json")
    purls = {c.get("purl") for c in sbom.json()["components"]}
    assert "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1" in purls
    assert not any(p and "requests" in p for p in purls)
    spdx = v2.get(f"/sbom/{repo}:v1", params={"format": "spdx"}).json()
    assert spdx["spdxVersion"] == "SPDX-2.3" and len(spdx["packages"]) == len(sbom.json()["components"])
    assert httpx.get(f"{srv.url}/sbom/{repo}@{image}").status_code == 401
    proc = cli(srv, "sbom", f"{repo}:v1", "--format", "cyclonedx")
    assert proc.returncode == 0, proc.stderr
    assert {c.get("purl") for c in json.loads(proc.stdout)["components"]} == purls


@pytest.mark.skipif(not os.access(AWS, os.X_OK), reason=f"{AWS} (AWS CLI v2) is not installed")
def test_aws_cli_shows_findings(srv: ServerProcess, ecr: Any, v2: httpx.Client, vulndb: Path,
                                tmp_path: Path) -> None:
    repo = f"scan/cli-{uuid.uuid4().hex[:8]}"
    ecr.create_repository(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True})
    push(v2, repo, b.alpine_layers(), "latest")
    wait_scan(ecr, repo, {"imageTag": "latest"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": srv.key_id, "AWS_SECRET_ACCESS_KEY": srv.secret,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": "", "AWS_CONFIG_FILE": str(tmp_path / "c"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "k"), "AWS_EC2_METADATA_DISABLED": "true"})
    proc = subprocess.run([AWS, "ecr", "describe-image-scan-findings", "--repository-name", repo, "--image-id",
                           "imageTag=latest", "--endpoint-url", srv.url, "--output", "json"],
                          capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["imageScanStatus"]["status"] == "COMPLETE"
    assert pairs(out["imageScanFindings"]["findings"]) == b.ALPINE_EXPECTED
    assert out["imageScanFindings"]["findingSeverityCounts"] == {"HIGH": 1}


def test_manual_scan_and_errors(ecr: Any, v2: httpx.Client, vulndb: Path) -> None:
    repo = f"scan/manual-{uuid.uuid4().hex[:8]}"
    ecr.create_repository(repositoryName=repo)
    image = push(v2, repo, b.rocky_layers(), "9")
    time.sleep(0.3)
    with raises("ScanNotFoundException"):
        ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageDigest": image})
    started = ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "9"})
    assert started["imageScanStatus"]["status"] == "IN_PROGRESS"
    assert started["imageId"] == {"imageDigest": image, "imageTag": "9"}
    out = wait_scan(ecr, repo, {"imageDigest": image})
    assert pairs(out["imageScanFindings"]["findings"]) == b.ROCKY_EXPECTED
    with raises("ImageNotFoundException"):
        ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageTag": "nope"})
    with raises("ImageNotFoundException"):
        ecr.start_image_scan(repositoryName=repo, imageId={"imageDigest": "sha256:" + "0" * 64})
    with raises("RepositoryNotFoundException"):
        ecr.start_image_scan(repositoryName="scan/absent", imageId={"imageTag": "x"})
    index = encode({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": image, "size": len(v2.get(f"/v2/{repo}/manifests/9").content),
         "platform": {"architecture": "amd64", "os": "linux"}}]})
    assert put_manifest(v2, repo, "multi", index, "application/vnd.oci.image.index.v1+json").status_code == 201
    with raises("UnsupportedImageTypeException"):
        ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "multi"})


def test_bad_and_huge_layers_fail_the_scan_not_the_server(srv: ServerProcess, ecr: Any, v2: httpx.Client) -> None:
    repo = f"scan/bad-{uuid.uuid4().hex[:8]}"
    ecr.create_repository(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True})
    push(v2, repo, [b"\x1f\x8b" + os.urandom(500)], "corrupt")
    bomb = b.tar_layer({"zeros": bytes(LAYER_LIMIT + (1 << 20))})
    push(v2, repo, [bomb], "bomb")
    corrupt = wait_scan(ecr, repo, {"imageTag": "corrupt"})["imageScanStatus"]
    assert corrupt["status"] == "FAILED" and "could not be read as a gzip layer" in corrupt["description"]
    huge = wait_scan(ecr, repo, {"imageTag": "bomb"})["imageScanStatus"]
    assert huge["status"] == "FAILED"
    assert f"larger than the scan limit of {LAYER_LIMIT} bytes uncompressed" in huge["description"]
    assert httpx.get(srv.url + "/healthz").status_code == 200


def test_registry_rules_and_continuous_scanning(srv: ServerProcess, ecr: Any, v2: httpx.Client, vulndb: Path,
                                                tmp_path: Path) -> None:
    prefix = f"cont-{uuid.uuid4().hex[:6]}"
    repo, other = f"{prefix}/app", f"push-{uuid.uuid4().hex[:6]}/app"
    ecr.create_repository(repositoryName=repo)
    ecr.create_repository(repositoryName=other)
    rules = [{"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [{"filter": f"{prefix}/*",
                                                                          "filterType": "WILDCARD"}]},
             {"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": other.split("/")[0],
                                                                       "filterType": "WILDCARD"}]}]
    with raises("InvalidParameterException", "ENHANCED"):
        ecr.put_registry_scanning_configuration(scanType="BASIC", rules=rules[:1])
    put = ecr.put_registry_scanning_configuration(scanType="ENHANCED", rules=rules)
    assert put["registryScanningConfiguration"] == {"scanType": "ENHANCED", "rules": rules}
    got = ecr.get_registry_scanning_configuration()
    assert got["registryId"] == "000000000000" and got["scanningConfiguration"]["rules"] == rules
    batch = ecr.batch_get_repository_scanning_configuration(repositoryNames=[repo, other, "scan/absent"])
    by_name = {c["repositoryName"]: c for c in batch["scanningConfigurations"]}
    assert by_name[repo]["scanFrequency"] == "CONTINUOUS_SCAN" and by_name[repo]["scanOnPush"] is True
    assert by_name[other]["scanFrequency"] == "SCAN_ON_PUSH"
    assert by_name[repo]["appliedScanFilters"] == [{"filter": f"{prefix}/*", "filterType": "WILDCARD"}]
    assert batch["failures"] == [{"repositoryName": "scan/absent", "failureCode": "REPOSITORY_NOT_FOUND",
                                  "failureReason": "REPOSITORY_NOT_FOUND"}]
    push(v2, repo, b.alpine_layers(), "v1")
    push(v2, other, b.rocky_layers(), "v1")
    assert pairs(wait_scan(ecr, other, {"imageTag": "v1"})["imageScanFindings"]["findings"]) == b.ROCKY_EXPECTED
    before = wait_scan(ecr, repo, {"imageTag": "v1"})["imageScanFindings"]
    assert pairs(before["findings"]) == b.ALPINE_EXPECTED
    # A new advisory arrives: the continuous repository is re-evaluated from its stored inventory.
    new = {"id": "ALPINE-CVE-2024-0099", "modified": "2024-09-09T09:09:09Z", "upstream": ["CVE-2024-0099"],
           "summary": "musl", "database_specific": {"severity": "CRITICAL"},
           "affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": "musl"}, "ranges": [
               {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2.4_git20230717-r5"}]}]}]}
    b.write_osv_zip(tmp_path / "all.zip", [new])
    proc = cli(srv, "vulndb", "import", str(tmp_path / "all.zip"))
    assert proc.returncode == 0, proc.stderr
    after = ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageTag": "v1"})["imageScanFindings"]
    assert pairs(after["findings"]) == b.ALPINE_EXPECTED | {("CVE-2024-0099", "musl")}
    assert after["vulnerabilitySourceUpdatedAt"].isoformat().startswith("2024-09-09T09:09:09")
    unchanged = ecr.describe_image_scan_findings(repositoryName=other, imageId={"imageTag": "v1"})["imageScanFindings"]
    assert unchanged["vulnerabilitySourceUpdatedAt"].isoformat().startswith("2024-03-01")  # SCAN_ON_PUSH only
    ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[])


def test_an_sbom_artifact_is_scan_input(ecr: Any, v2: httpx.Client, vulndb: Path) -> None:
    """An OCI artifact carrying a CycloneDX document is scanned from the packages it lists."""
    from cargohold.domain.inventory.packages import Inventory, OsRelease, Package, finalize
    from cargohold.domain.sbom import cyclonedx
    repo = f"scan/sbom-{uuid.uuid4().hex[:8]}"
    ecr.create_repository(repositoryName=repo)
    inventory = finalize(Inventory(OsRelease("alpine", "3.19.1"), [
        Package("apk", "libcrypto3", "3.1.4-r0", source_name="openssl"), Package("npm", "lodash", "4.17.20")]))
    document = json.dumps(cyclonedx(inventory, image="app", digest="sha256:" + "1" * 64, created_ms=0)).encode()
    empty = b"{}"
    push_blob(v2, repo, empty)
    push_blob(v2, repo, document)
    body = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.cyclonedx+json",
                   "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(empty), "size": 2},
                   "layers": [{"mediaType": "application/vnd.cyclonedx+json", "digest": digest(document),
                               "size": len(document)}]})
    assert put_manifest(v2, repo, "sbom", body).status_code == 201
    ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "sbom"})
    out = wait_scan(ecr, repo, {"imageTag": "sbom"})
    assert pairs(out["imageScanFindings"]["findings"]) == {("CVE-2024-0020", "openssl"), ("CVE-2021-23337", "lodash")}
