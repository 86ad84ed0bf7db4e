"""Online garbage collection under load: no acknowledged image ever loses a blob.

A live `cargohold serve --workers 2` runs its background collector every second with a one-second
grace window, and beside it a thread runs `cargohold gc --grace 0` in a loop on the same data
directory. Client threads push images for a while (random layers, some shared between images and
repositories, shared layers skipped after a HEAD like docker does, or mounted across repositories)
and delete some of them by digest. A push may lose a race with a collection: its manifest PUT then
fails with MANIFEST_BLOB_UNKNOWN and the client retries the whole push (HEAD again, upload what is
missing). Every manifest PUT acknowledged with 201 and not deleted afterwards must pull completely
at the end, every blob matching its digest: zero lost blobs.

Bounded: LOAD_SECONDS of load, at most MAX_PUSHES pushes per client, loopback only.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess, cleanup, temp_server

LOAD_SECONDS = 30.0
CLIENTS = 4
MAX_PUSHES = 400  # per client
PUSH_ATTEMPTS = 8
REPOS = ["stress-a", "stress-b", "stress-c"]
SHARED_LAYERS = [os.urandom(2048 + 512 * i) for i in range(8)]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCTET = {"Content-Type": "application/octet-stream"}

pytestmark = pytest.mark.timeout(150)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    repo: str
    digest: str
    body: bytes
    blobs: dict[str, int]  # digest -> size


@dataclass
class Stats:
    pushes: int = 0
    acknowledged: int = 0
    deletes: int = 0
    retries: int = 0
    uploads: int = 0
    head_skips: int = 0
    mounts: int = 0
    push_failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


class Lost(Exception):
    """A manifest PUT said MANIFEST_BLOB_UNKNOWN: a collection won the race; push again."""


def error_code(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["errors"][0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


class Pusher:
    def __init__(self, server: ServerProcess, stats: Stats, seed: int, stop: threading.Event) -> None:
        self.client = httpx.Client(base_url=server.url, auth=server.auth, timeout=60)
        self.stats = stats
        self.rng = random.Random(seed)
        self.stop = stop
        self.live: list[Image] = []  # acknowledged and not deleted, by this client
        self.deleted: list[Image] = []

    # -- one blob, the ways clients send them ------------------------------------------------

    def ensure_blob(self, repo: str, data: bytes) -> None:
        d = sha256(data)
        r = self.client.head(f"/v2/{repo}/blobs/{d}")
        if r.status_code == 200:  # docker skips the upload
            self.stats.add(head_skips=1)
            return
        assert r.status_code == 404, (r.status_code, r.text)
        way = self.rng.random()
        if way < 0.2 and data in SHARED_LAYERS:
            source = self.rng.choice([name for name in REPOS if name != repo])
            r = self.client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": d, "from": source})
            if r.status_code == 201:
                self.stats.add(mounts=1)
                return
            assert r.status_code == 202, (r.status_code, r.text)
            location = r.headers["location"]  # not mountable: a normal upload session instead
            r = self.client.put(location, params={"digest": d}, content=data, headers=OCTET)
        elif way < 0.6:  # POST, PATCH, PUT (docker's way)
            r = self.client.post(f"/v2/{repo}/blobs/uploads/")
            assert r.status_code == 202, (r.status_code, r.text)
            r = self.client.patch(r.headers["location"], content=data, headers=OCTET)
            assert r.status_code == 202, (r.status_code, r.text)
            r = self.client.put(r.headers["location"], params={"digest": d})
        else:  # monolithic POST
            r = self.client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data, headers=OCTET)
        assert r.status_code == 201, (r.status_code, r.text)
        self.stats.add(uploads=1)

    # -- a push: blobs then manifest, retried whole when a collection won -------------------------

    def push(self) -> None:
        repo = self.rng.choice(REPOS)
        layers = [os.urandom(self.rng.randint(100, 8000)) for _ in range(self.rng.randint(0, 2))]
        layers += self.rng.sample(SHARED_LAYERS, self.rng.randint(0, 3))
        if not layers:
            layers = [self.rng.choice(SHARED_LAYERS)]
        config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": uuid.uuid4().hex}).encode()
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(x), "size": len(x)} for x in layers],
        }).encode()
        tag = f"t{self.rng.randint(0, 20)}" if self.rng.random() < 0.3 else None
        self.stats.add(pushes=1)
        for attempt in range(PUSH_ATTEMPTS):
            try:
                for data in [config, *layers]:
                    self.ensure_blob(repo, data)
                r = self.client.put(f"/v2/{repo}/manifests/{tag or sha256(body)}", content=body,
                                    headers={"Content-Type": OCI_MANIFEST})
                if r.status_code in (400, 404) and error_code(r) == "MANIFEST_BLOB_UNKNOWN":
                    raise Lost
                assert r.status_code == 201, (r.status_code, r.text)
                assert r.headers["docker-content-digest"] == sha256(body)
            except Lost:
                self.stats.add(retries=1)
                continue
            except AssertionError as exc:
                with self.stats.lock:
                    self.stats.push_failures.append(f"attempt {attempt}: {exc}")
                return
            self.live.append(Image(repo, sha256(body), body, {sha256(x): len(x) for x in [config, *layers]}))
            self.stats.add(acknowledged=1)
            return
        with self.stats.lock:
            self.stats.push_failures.append(f"gave up after {PUSH_ATTEMPTS} MANIFEST_BLOB_UNKNOWN")

    def delete_one(self) -> None:
        image = self.live.pop(self.rng.randrange(len(self.live)))
        r = self.client.delete(f"/v2/{image.repo}/manifests/{image.digest}")
        assert r.status_code == 202, (r.status_code, r.text)
        self.deleted.append(image)
        self.stats.add(deletes=1)

    def run(self) -> None:
        try:
            for _ in range(MAX_PUSHES):
                if self.stop.is_set():
                    return
                self.push()
                if self.live and self.rng.random() < 0.3:
                    self.delete_one()
        except Exception as exc:  # reported by the test
            with self.stats.lock:
                self.stats.push_failures.append(f"client crashed: {exc!r}")


class GcLoop:
    """`cargohold gc --grace 0` over and over on the server's data directory."""

    def __init__(self, data_dir: Path, stop: threading.Event) -> None:
        self.data_dir = data_dir
        self.stop = stop
        self.runs = 0
        self.freed = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            proc = subprocess.run([sys.executable, "-m", "cargohold", "gc", "--data-dir", str(self.data_dir),
                                   "--grace", "0"], capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                self.failures.append(proc.stderr[-2000:])
                continue
            self.runs += 1
            m = re.search(r"Freed (\d+) blobs", proc.stdout)
            self.freed += int(m.group(1)) if m else 0


@pytest.fixture()
def collecting_server() -> Iterator[ServerProcess]:
    srv = temp_server(workers=2, env={"CARGOHOLD_GC_GRACE": "1", "CARGOHOLD_GC_INTERVAL": "1",
                                      "CARGOHOLD_LOG_LEVEL": "info"})
    try:
        yield srv.start()
    finally:
        cleanup(srv)


def pull_all(client: httpx.Client, images: list[Image]) -> list[str]:
    """Every manifest and blob of the images, each checked against its digest; the problems found."""
    lost: list[str] = []
    for image in images:
        r = client.get(f"/v2/{image.repo}/manifests/{image.digest}", headers={"Accept": OCI_MANIFEST})
        if r.status_code != 200 or r.content != image.body:
            lost.append(f"manifest {image.repo}@{image.digest}: {r.status_code}")
            continue
        for d, size in image.blobs.items():
            r = client.get(f"/v2/{image.repo}/blobs/{d}")
            if r.status_code != 200 or len(r.content) != size or sha256(r.content) != d:
                lost.append(f"blob {image.repo}@{d} of {image.digest}: {r.status_code} {r.text[:200]}")
    return lost


def rows_without_files(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "meta.db") as conn:
        digests = [row[0] for row in conn.execute("SELECT digest FROM blobs")]
    missing = []
    for d in digests:
        algorithm, hexdigest = d.split(":", 1)
        if not (data_dir / "blobs" / algorithm / hexdigest[:2] / hexdigest).is_file():
            missing.append(d)
    return missing


def test_no_acknowledged_image_loses_a_blob_while_collectors_run(collecting_server: ServerProcess) -> None:
    server = collecting_server
    stats = Stats()
    stop_clients, stop_gc = threading.Event(), threading.Event()
    pushers = [Pusher(server, stats, seed, stop_clients) for seed in range(CLIENTS)]
    gc_loop = GcLoop(server.data_dir, stop_gc)
    threads = [threading.Thread(target=p.run, name=f"pusher-{i}") for i, p in enumerate(pushers)]
    gc_thread = threading.Thread(target=gc_loop.run, name="gc-loop")
    gc_thread.start()
    for t in threads:
        t.start()
    deadline = time.monotonic() + LOAD_SECONDS
    while time.monotonic() < deadline and any(t.is_alive() for t in threads):
        time.sleep(0.2)
    stop_clients.set()
    for t in threads:
        t.join(60)
    stop_gc.set()
    gc_thread.join(60)
    assert not any(t.is_alive() for t in [*threads, gc_thread])

    live = [image for p in pushers for image in p.live]
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=60) as client:
        lost = pull_all(client, live)
        # Deleted images are really gone (by digest) - unless another client pushed the same manifest.
        live_digests = {(image.repo, image.digest) for image in live}
        for image in (i for p in pushers for i in p.deleted):
            if (image.repo, image.digest) not in live_digests:
                r = client.head(f"/v2/{image.repo}/manifests/{image.digest}")
                assert r.status_code == 404, image.digest

    background_runs = server.log().count("gc: ")
    print(f"\ngc stress: {stats.pushes} pushes, {stats.acknowledged} acknowledged, {stats.deletes} deletes, "
          f"{stats.retries} MANIFEST_BLOB_UNKNOWN retries, {stats.uploads} uploads, {stats.head_skips} HEAD skips, "
          f"{stats.mounts} mounts; {gc_loop.runs} CLI gc runs ({gc_loop.freed} blobs freed), "
          f"{background_runs} background gc runs; {len(live)} images verified, {len(lost)} lost")
    assert not gc_loop.failures, gc_loop.failures[:3]
    assert not stats.push_failures, stats.push_failures[:10]
    assert not lost, lost[:20]
    assert stats.acknowledged >= 50 and stats.deletes >= 10, stats
    assert gc_loop.runs >= 2 and background_runs >= 3, (gc_loop.runs, background_runs)

    # With the load stopped, one more collection leaves a consistent store: an empty trash and a
    # file for every blob row; then everything still pulls.
    proc = subprocess.run([sys.executable, "-m", "cargohold", "gc", "--data-dir", str(server.data_dir),
                           "--grace", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert list((server.data_dir / "trash").iterdir()) == []
    assert rows_without_files(server.data_dir) == []
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=60) as client:
        assert pull_all(client, live) == []
    errors = [line for line in server.log().splitlines() if "ERROR" in line or "Traceback" in line]
    assert not errors, errors[:10]
