"""Metering on a fixed clock: GB-months of a known history, deduplication, transfer by client network."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cargohold.domain.cost import GB, HOUR_MS
from cargohold.services.metering import INTERNET, SAME_REGION, NetworkClassifier
from cargohold.storage.meta.metering import MeteringStore
from tests.ecr.helpers import build_image
from tests.usage.conftest import ACCOUNT, MIB, ROOT_ARN, Registry, line, make_registry, ms, sha256


def test_gb_months_of_a_push_mount_delete_history(registry: Registry) -> None:
    """One 3 MiB blob through March 2024 (31 days = 744 hours), worked out by hand:

        hours   0-240  alpha holds it alone             alpha 3 MiB
        hours 240-480  beta mounts it: shared, split    alpha 1.5 MiB, beta 1.5 MiB
        hours 480-744  alpha deletes its link           beta 3 MiB

    alpha: 3*240 + 1.5*240        = 1080 MiB-hours
    beta:  1.5*240 + 3*264        = 1152 MiB-hours
    both:  2232 MiB-hours = 3 MiB * 744 hours: the registry stored the blob once, all month.
    GB-months = MiB-hours / (1024 MiB per GB * 744 hours in March).
    """
    clock, metering = registry.clock, registry.services.metering
    assert metering is not None
    blob = os.urandom(3 * MIB)
    clock.set("2024-03-01T00:00")
    digest = registry.push_blob("alpha", blob)
    clock.set("2024-03-01T00:30")  # a sample stands for its whole hour
    assert metering.snapshot() == 1
    clock.set("2024-03-05T07:00")
    assert metering.snapshot() == 0  # nothing changed: no row written

    clock.set("2024-03-11T00:10")
    r = registry.client().post("/v2/beta/blobs/uploads/", params={"mount": digest, "from": "alpha"})
    assert r.status_code == 201, r.text
    clock.set("2024-03-11T00:20")
    assert metering.snapshot() == 2

    clock.set("2024-03-21T00:00")
    assert registry.client().delete(f"/v2/alpha/blobs/{digest}").status_code == 202
    assert metering.snapshot() == 2

    clock.set("2024-04-01T00:00")
    report = registry.report(months=2)
    assert [m["month"] for m in report["months"]] == ["2024-03", "2024-04"]
    alpha, beta = line(report, "2024-03", "alpha"), line(report, "2024-03", "beta")
    assert alpha["storage_gb_months"] == pytest.approx(1080 / (1024 * 744), rel=1e-12)
    assert beta["storage_gb_months"] == pytest.approx(1152 / (1024 * 744), rel=1e-12)
    totals = report["months"][0]["totals"]
    assert totals["storage_gb_months"] == pytest.approx(3 / 1024, rel=1e-12)  # 3 MiB for the whole month
    assert totals["storage_cost"] == pytest.approx(3 / 1024 * 0.10, rel=1e-12)
    # A past month shows the figures in force at its end.
    assert (alpha["storage_bytes_now"], beta["storage_bytes_now"], beta["shared_bytes"]) == (0, 3 * MIB, 0)
    assert alpha["push_bytes"] == 3 * MIB and beta["push_bytes"] == 0  # a mount moves no bytes

    # April has just begun: no whole hour yet, beta holds the blob, alpha has nothing to show.
    april = report["months"][1]
    assert [x["repository"] for x in april["repositories"]] == ["beta"]
    assert april["repositories"][0]["storage_gb_months"] == 0.0
    assert april["repositories"][0]["storage_bytes_now"] == 3 * MIB
    # Next month at this rate: beta's 3 MiB for all of May, no internet pulls.
    assert report["projection"] == {"month": "2024-05", "total_cost": pytest.approx(3 / 1024 * 0.10, rel=1e-12)}


def test_shared_bytes_are_split_while_shared(registry: Registry) -> None:
    metering = registry.services.metering
    assert metering is not None
    common = os.urandom(300_001)  # odd: the remainder byte goes to the lower repository id
    own = os.urandom(1000)
    registry.push_blob("one", common)
    registry.push_blob("two", common)
    registry.push_blob("three", common)
    registry.push_blob("two", own)
    metering.snapshot()
    registry.clock.set("2024-03-01T05:00")
    report = registry.report()
    lines = {x["repository"]: x for x in report["months"][0]["repositories"]}
    assert {n: lines[n]["storage_bytes_now"] for n in lines} == {"one": 100_001, "two": 100_000 + 1000,
                                                                "three": 100_000}
    assert {n: lines[n]["shared_bytes"] for n in lines} == {"one": 300_001, "two": 300_001, "three": 300_001}
    # Billed once: the repositories' bytes add up to what the registry stores.
    assert report["months"][0]["totals"]["storage_bytes_now"] == 300_001 + 1000
    # Five whole hours (00:00-05:00) of 301,001 bytes.
    expected = 301_001 * 5 * HOUR_MS / (GB * 744 * HOUR_MS)
    assert report["months"][0]["totals"]["storage_gb_months"] == pytest.approx(expected, rel=1e-12)


def test_transfer_is_classified_by_client_address(registry: Registry) -> None:
    image = build_image([os.urandom(5000), os.urandom(7000)], oci=True)
    pusher = registry.client("10.0.0.5")
    for blob in image.blobs:
        registry.push_blob("app", blob, "10.0.0.5")
    r = pusher.put("/v2/app/manifests/v1", content=image.manifest, headers={"Content-Type": image.media_type})
    assert r.status_code == 201, r.text
    layer = image.layers[0]
    layer_digest = sha256(layer)

    internet, region = registry.client("203.0.113.7"), registry.client("192.168.1.20")
    mapped = registry.client("::ffff:10.1.1.1")  # a dual-stack listener's view of an IPv4 client
    assert len(internet.get(f"/v2/app/blobs/{layer_digest}").content) == 5000
    assert internet.head(f"/v2/app/blobs/{layer_digest}").status_code == 200  # no body, nothing counted
    assert len(internet.get("/v2/app/manifests/v1").content) == len(image.manifest)
    assert region.get(f"/v2/app/blobs/{layer_digest}", headers={"Range": "bytes=10-19"}).status_code == 206
    assert mapped.get(f"/v2/app/blobs/{layer_digest}", headers={"Range": "bytes=-5"}).status_code == 206
    assert registry.client("198.51.100.1", auth=False).get(f"/v2/app/blobs/{layer_digest}").status_code == 401

    # Counted in process only: nothing is written until the flush.
    metering = registry.services.metering
    assert metering is not None and metering.pending() > 0
    store = MeteringStore(registry.services.meta)
    assert store.transfer(ACCOUNT, 0, ms("2030-01-01T00:00")) == []

    report = registry.report()
    app = line(report, "2024-03", "app")
    pushed = sum(len(b) for b in image.blobs) + len(image.manifest)
    assert app["push_bytes"] == pushed
    assert app["pull_bytes_internet"] == 5000 + len(image.manifest)
    assert app["pull_bytes_same_region"] == 10 + 5
    assert app["transfer_cost"] == pytest.approx((5000 + len(image.manifest)) / GB * 0.09, rel=1e-12)
    assert report["principals"] == [{"principal": ROOT_ARN, "pull_bytes": 5000 + len(image.manifest) + 15,
                                     "push_bytes": pushed, "pull_bytes_internet": 5000 + len(image.manifest)}]
    assert metering.pending() == 0

    # Counters land in the hour they were counted in, and add up across flushes.
    registry.clock.set("2024-03-01T01:59")
    internet.get(f"/v2/app/blobs/{layer_digest}")
    internet.get(f"/v2/app/blobs/{layer_digest}")
    metering.flush()
    rows = [r for r in store.transfer(ACCOUNT, 0, ms("2030-01-01T00:00")) if r.network == INTERNET and
            r.direction == "pull"]
    assert sorted((r.hour, r.bytes, r.requests) for r in rows) == [
        (ms("2024-03-01T00:00"), 5000 + len(image.manifest), 2), (ms("2024-03-01T01:00"), 10_000, 2)]


def test_configured_networks(tmp_path: Path) -> None:
    classify = NetworkClassifier(["203.0.113.0/24", "2001:db8::/32"])
    assert classify("203.0.113.9") == SAME_REGION and classify("2001:db8::1") == SAME_REGION
    assert classify("10.0.0.1") == INTERNET and classify("127.0.0.1") == INTERNET
    default = NetworkClassifier()
    for address in ("127.0.0.1", "::1", "10.200.0.1", "172.31.255.255", "192.168.0.1", "fd12::1",
                    "::ffff:192.168.3.4"):
        assert default(address) == SAME_REGION, address
    for address in ("8.8.8.8", "172.32.0.1", "2001:db8::1", "", "testclient", "::ffff:8.8.8.8"):
        assert default(address) == INTERNET, address
    # Through the whole stack, with the setting from the config.
    for registry in make_registry(tmp_path, same_region_networks=["203.0.113.0/24"]):
        digest = registry.push_blob("cfg", b"z" * 1000, "10.0.0.5")
        registry.client("203.0.113.50").get(f"/v2/cfg/blobs/{digest}")
        registry.client("10.0.0.5").get(f"/v2/cfg/blobs/{digest}")
        got = line(registry.report(), "2024-03", "cfg")
        assert (got["pull_bytes_same_region"], got["pull_bytes_internet"]) == (1000, 1000)


def test_api_returns_the_report(registry: Registry) -> None:
    digest = registry.push_blob("api", os.urandom(2048))
    registry.client("8.8.4.4").get(f"/v2/api/blobs/{digest}")
    assert registry.services.metering is not None
    registry.services.metering.flush()
    r = registry.client().get("/api/usage", params={"months": "2"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == json.loads(json.dumps(registry.report(months=2)))
    assert registry.client().get("/api/usage").json()["months"][-1]["month"] == "2024-03"
    assert len(registry.client().get("/api/usage").json()["months"]) == 3  # the default
