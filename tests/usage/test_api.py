"""GET /api/usage and `cargohold usage` against a live server: client networks through a trusted
proxy's X-Forwarded-For, the ECR face and download URLs, auth and bad input, and CLI == API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest

from tests.api.helpers import assert_oci_error
from tests.ecr.helpers import build_image, ecr_client, push_v2, sha256, unique_name
from tests.support.server import ServerProcess, cleanup, temp_server

ROOT_ARN = "arn:aws:iam::000000000000:root"
INTERNET_IP, REGION_IP = "198.51.100.23", "10.20.30.40"


@pytest.fixture(scope="module")
def live() -> Iterator[ServerProcess]:
    """A server behind a pretend proxy (127.0.0.1 is trusted), flushing counters five times a second."""
    srv = temp_server(extra_args=["--trusted-proxy", "127.0.0.1/32"],
                      env={"CARGOHOLD_METERING_FLUSH_SECONDS": "0.2", "CARGOHOLD_METERING_SNAPSHOT_SECONDS": "0.5",
                           "CARGOHOLD_GC_INTERVAL": "0", "CARGOHOLD_LIFECYCLE_INTERVAL": "0"}).start()
    try:
        yield srv
    finally:
        cleanup(srv)


@pytest.fixture()
def client(live: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, auth=live.auth, timeout=30) as c:
        yield c


def usage(client: httpx.Client, **params: Any) -> dict[str, Any]:
    r = client.get("/api/usage", params=params)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def current_line(doc: dict[str, Any], repository: str) -> dict[str, Any] | None:
    return next((x for x in doc["months"][-1]["repositories"] if x["repository"] == repository), None)


def wait_for(client: httpx.Client, done: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = usage(client, months=1)
        if done(doc) or time.monotonic() > deadline:
            return doc
        time.sleep(0.1)


def test_transfer_by_forwarded_address_and_face(live: ServerProcess, client: httpx.Client) -> None:
    repo = unique_name("usage").replace("ecr-tests/", "usage/")
    image = build_image([b"L" * 40_000, b"M" * 20_000])
    assert push_v2(client, repo, image, "v1").status_code == 201
    pushed = sum(len(b) for b in image.blobs) + len(image.manifest)
    layer = sha256(image.layers[0])

    assert len(client.get(f"/v2/{repo}/blobs/{layer}", headers={"X-Forwarded-For": INTERNET_IP}).content) == 40_000
    r = client.get(f"/v2/{repo}/blobs/{layer}", headers={"X-Forwarded-For": INTERNET_IP, "Range": "bytes=0-999"})
    assert r.status_code == 206 and len(r.content) == 1000
    r = client.get(f"/v2/{repo}/manifests/v1", headers={"X-Forwarded-For": REGION_IP})
    assert r.content == image.manifest
    # An untrusted hop in front of the proxy is what counts: "8.8.8.8, 10.1.1.1" comes from 10.1.1.1.
    client.get(f"/v2/{repo}/blobs/{sha256(image.layers[1])}", headers={"X-Forwarded-For": "8.8.8.8, 10.1.1.1"})

    # The ECR face: BatchGetImage returns the manifest (a pull), a download URL serves the layer.
    ecr = ecr_client(live)
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert len(got["images"]) == 1
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=layer)["downloadUrl"]
    assert len(httpx.get(url, headers={"X-Forwarded-For": "203.0.113.9"}).content) == 40_000

    internet = 40_000 + 1000 + 40_000
    region = len(image.manifest) + 20_000 + len(got["images"][0]["imageManifest"].encode())
    doc = wait_for(client, lambda d: (current_line(d, repo) or {}).get("pull_bytes_same_region") == region
                   and (current_line(d, repo) or {}).get("pull_bytes_internet") == internet)
    line = current_line(doc, repo)
    assert line is not None
    assert (line["pull_bytes_internet"], line["pull_bytes_same_region"], line["push_bytes"]) == \
        (internet, region, pushed)
    assert line["storage_bytes_now"] == pushed and line["shared_bytes"] == 0
    assert line["transfer_cost"] == pytest.approx(internet / (1 << 30) * 0.09, rel=1e-12)
    root = next(p for p in doc["principals"] if p["principal"] == ROOT_ARN)
    assert root["pull_bytes_internet"] >= internet and root["push_bytes"] >= pushed


def test_cli_json_matches_the_api(live: ServerProcess, client: httpx.Client) -> None:
    repo = unique_name("cli").replace("ecr-tests/", "usage/")
    assert push_v2(client, repo, build_image(), "v1").status_code == 201
    client.get(f"/v2/{repo}/manifests/v1", headers={"X-Forwarded-For": INTERNET_IP})
    wait_for(client, lambda d: (current_line(d, repo) or {}).get("pull_bytes_internet", 0) > 0)
    for _ in range(3):  # storage counts whole hours: retry if one ended between the two reads
        hour = time.time() // 3600
        api = usage(client, months=2)
        out = subprocess.run([sys.executable, "-m", "cargohold", "usage", "--format", "json", "--months", "2",
                              "--data-dir", str(live.data_dir)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        if time.time() // 3600 == hour:
            break
    cli = json.loads(out.stdout)
    assert cli == api
    assert cli["months"][-1]["totals"]["total_cost"] == pytest.approx(
        sum(x["total_cost"] for x in cli["months"][-1]["repositories"]), rel=1e-9)
    csv = subprocess.run([sys.executable, "-m", "cargohold", "usage", "--format", "csv", "--data-dir",
                          str(live.data_dir)], capture_output=True, text=True, timeout=60)
    assert csv.returncode == 0 and f"{repo}," in csv.stdout and "(projection)" in csv.stdout


def test_bad_requests(live: ServerProcess) -> None:
    r = httpx.get(live.url + "/api/usage")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert "www-authenticate" in r.headers
    assert_oci_error(httpx.get(live.url + "/api/usage", auth=(live.key_id, "wrong")), 401, "UNAUTHORIZED")
    for months in ("abc", "0", "121", "-1", "2.5"):
        r = httpx.get(live.url + "/api/usage", params={"months": months}, auth=live.auth)
        assert r.status_code == 400, (months, r.text)
        assert r.json()["errors"][0]["message"].startswith("months must be")
    r = httpx.post(live.url + "/api/usage", auth=live.auth)
    assert r.status_code == 405


def test_needs_describe_repositories(live: ServerProcess) -> None:
    iam = boto3.client("iam", endpoint_url=live.url, region_name="us-east-1", aws_access_key_id=live.key_id,
                       aws_secret_access_key=live.secret)
    user = unique_name("u").replace("ecr-tests/", "")
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    auth = (key["AccessKeyId"], key["SecretAccessKey"])
    assert_oci_error(httpx.get(live.url + "/api/usage", auth=auth), 403, "DENIED")
    iam.put_user_policy(UserName=user, PolicyName="usage", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:DescribeRepositories",
                                                "Resource": "arn:aws:ecr:us-east-1:000000000000:repository/*"}]}))
    r = httpx.get(live.url + "/api/usage", auth=auth)
    assert r.status_code == 200, r.text
    assert r.json()["account_id"] == "000000000000"
    # A login token (Bearer) works as well.
    token = httpx.get(live.url + "/token", auth=auth).json()["token"]
    assert httpx.get(live.url + "/api/usage", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_counters_are_written_at_shutdown() -> None:
    srv = temp_server(env={"CARGOHOLD_METERING_FLUSH_SECONDS": "3600"}).start()  # only the shutdown flushes
    try:
        with httpx.Client(base_url=srv.url, auth=srv.auth, timeout=30) as c:
            data = b"s" * 12_345
            r = c.post("/v2/down/blobs/uploads/", params={"digest": sha256(data)}, content=data)
            assert r.status_code == 201
            assert len(c.get(f"/v2/down/blobs/{sha256(data)}").content) == 12_345
        srv.stop()
        out = subprocess.run([sys.executable, "-m", "cargohold", "usage", "--format", "json", "--months", "1",
                              "--data-dir", str(srv.data_dir)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        [line] = json.loads(out.stdout)["months"][0]["repositories"]
        assert (line["repository"], line["push_bytes"], line["pull_bytes_same_region"]) == ("down", 12_345, 12_345)
    finally:
        cleanup(srv)
