"""Storage accounting: DescribeImages' imageSizeInBytes, `cargohold repos` per repository (stored and
exclusive bytes, with layers shared between two repositories), the registry-wide deduplicated total, and
everything back to zero after the images are deleted and `cargohold gc --grace 0` runs.

The server is this module's own, so the registry-wide figures are exactly what these tests pushed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cargohold.services.usage import StorageUsage
from cargohold.storage.meta.engine import make_engine, sqlite_url
from cargohold.storage.meta.store import MetadataStore
from tests.ecr.helpers import build_image, build_index, ecr_client, push_ecr, sha256
from tests.lifecycle.helpers import cargohold
from tests.support.server import ServerProcess, cleanup, temp_server

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    server = temp_server(env={"CARGOHOLD_GC_INTERVAL": "0", "CARGOHOLD_LIFECYCLE_INTERVAL": "0"}).start()
    try:
        yield server
    finally:
        cleanup(server)


def repos_json(data_dir: Path) -> dict[str, dict[str, Any]]:
    rows = json.loads(cargohold("repos", "--format", "json", data_dir=data_dir).stdout)
    return {row["repository"]: row for row in rows}


def registry_totals(data_dir: Path) -> tuple[int, int, int]:
    """(blob count, deduplicated bytes, logical bytes) read straight from the metadata store."""
    engine = make_engine(sqlite_url(data_dir.resolve()))
    try:
        report = StorageUsage(MetadataStore(engine)).report()
        return report.blob_count, report.deduplicated_bytes, report.logical_bytes
    finally:
        engine.dispose()


def disk_bytes(root: Path, *skip: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if not any(part in skip for part in path.relative_to(root).parts):
                total += path.stat().st_size
    return total


def test_sizes_usage_and_collection(srv: ServerProcess) -> None:
    ecr = ecr_client(srv)
    a, b = "usage/alpha", "usage/beta"
    for name in (a, b):
        ecr.create_repository(repositoryName=name)

    shared, only_a, only_a2, only_b = (os.urandom(n) for n in (10_000, 20_000, 5_000, 30_000))
    image_a = build_image([shared, only_a], label="a")
    image_a2 = build_image([only_a, only_a2], label="a2")  # shares a layer with image_a, same repository
    image_b = build_image([shared, only_b], label="b")
    push_ecr(ecr, a, image_a, "one")
    push_ecr(ecr, a, image_a2, "two")
    push_ecr(ecr, b, image_b, "one")
    index = build_index([image_a, image_a2])
    ecr.put_image(repositoryName=a, imageManifest=index.decode(), imageTag="multi")

    # DescribeImages: the sum of the compressed layer sizes (the config is not a layer); an index reports
    # the largest of its manifests.
    details = {d["imageDigest"]: d for name in (a, b) for d in ecr.describe_images(repositoryName=name)["imageDetails"]}
    assert details[image_a.digest]["imageSizeInBytes"] == 10_000 + 20_000 == image_a.layer_bytes
    assert details[image_a2.digest]["imageSizeInBytes"] == 20_000 + 5_000
    assert details[image_b.digest]["imageSizeInBytes"] == 10_000 + 30_000
    assert details[sha256(index)]["imageSizeInBytes"] == max(image_a.layer_bytes, image_a2.layer_bytes)

    # Per repository: every blob it links, counted once even when two of its images share it, plus its
    # manifests (stored too); exclusive leaves out the blob the other repository links as well.
    manifests_a = len(image_a.manifest) + len(image_a2.manifest) + len(index)
    blobs_a = len(image_a.config) + len(image_a2.config) + 10_000 + 20_000 + 5_000
    blobs_b = len(image_b.config) + 10_000 + 30_000
    usage = repos_json(srv.data_dir)
    assert set(usage) == {a, b}
    assert usage[a]["images"] == 3 and usage[b]["images"] == 1
    assert usage[a]["blobs"] == 5 and usage[b]["blobs"] == 3
    assert usage[a]["stored_bytes"] == blobs_a + manifests_a
    assert usage[a]["exclusive_bytes"] == blobs_a - 10_000 + manifests_a
    assert usage[b]["stored_bytes"] == blobs_b + len(image_b.manifest)
    assert usage[b]["exclusive_bytes"] == blobs_b - 10_000 + len(image_b.manifest)
    for row in usage.values():
        assert row["account_id"] == "000000000000" and row["last_push"] is not None

    # Registry-wide after deduplication: each blob once.
    unique = {sha256(x): len(x) for x in [*image_a.blobs, *image_a2.blobs, *image_b.blobs]}
    assert len(unique) == 7
    count, deduplicated, logical = registry_totals(srv.data_dir)
    assert count == len(unique)
    assert deduplicated == sum(unique.values())
    assert logical == usage[a]["stored_bytes"] + usage[b]["stored_bytes"]
    assert logical - deduplicated == 10_000 + manifests_a + len(image_b.manifest)  # the shared layer, twice
    table = cargohold("repos", data_dir=srv.data_dir).stdout  # the table's footer says the same
    assert f"On disk after deduplication: {len(unique)} blobs, {deduplicated / 1024:.1f} KiB" in table

    # Delete every image (the index first: its children cannot go while it references them), then collect.
    ecr.batch_delete_image(repositoryName=a, imageIds=[{"imageDigest": sha256(index)}])
    for name, images in ((a, [image_a, image_a2]), (b, [image_b])):
        out = ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageDigest": i.digest} for i in images])
        assert out["failures"] == []
    usage = repos_json(srv.data_dir)
    assert usage[a]["images"] == 0 and usage[b]["images"] == 0
    assert usage[a]["stored_bytes"] == blobs_a  # unreferenced blobs stay until collected
    gc = cargohold("gc", "--grace", "0", data_dir=srv.data_dir)
    assert re.search(r"Freed 7 blobs .* Now stored: 0 blobs, 0 B\.", gc.stdout.replace("\n", " ")), gc.stdout

    usage = repos_json(srv.data_dir)
    count, deduplicated, logical = registry_totals(srv.data_dir)
    on_disk = disk_bytes(srv.data_dir / "blobs") if (srv.data_dir / "blobs").exists() else 0
    print(f"after deleting everything and `cargohold gc --grace 0`: {count} blobs, {deduplicated} bytes "
          f"deduplicated, {logical} bytes logical, {on_disk} bytes of blob files on disk; per repository "
          f"{ {name: row['stored_bytes'] for name, row in usage.items()} }")
    assert (count, deduplicated, logical) == (0, 0, 0)
    assert all(row["stored_bytes"] == 0 and row["exclusive_bytes"] == 0 and row["blobs"] == 0
               for row in usage.values())
    assert on_disk == 0
    # The server is still serving.
    assert ecr.describe_repositories(repositoryNames=[a, b])["repositories"]
