#!/usr/bin/env python3
"""Benchmark cargohold against the reference registry (CNCF Distribution) on this machine.

Both registries run side by side in one run; each figure is the median over --reps runs,
taken in alternating order (reference, cargohold, ...) so drift hits both alike. Server CPU
seconds are read from /proc/<pid>/stat of each server's process tree.

    .venv/bin/python bench/run.py                 # full run, writes docs/benchmarks.md
    .venv/bin/python bench/run.py --quick         # smoke run: small sizes, 1 repetition
    .venv/bin/python bench/run.py --only push,pull --json /tmp/bench.json

Benchmarks (--only): push, pull, fanout, manifest, head, docker, rss.
Needs: /usr/bin/docker-registry (Debian `docker-registry`), `wrk` (manifest, head),
`dockerd` + `docker` (docker). Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import http.client
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.server import ServerProcess, free_port  # noqa: E402

MiB = 1 << 20
MB = 1_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
REF_BINARY = "/usr/bin/docker-registry"
REF_USER, REF_PASSWORD = "bench", "bench-password"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
ALL_BENCHES = ("push", "pull", "fanout", "manifest", "head", "docker", "rss")
RESULTS_START = "<!-- bench:results:start -->"
RESULTS_END = "<!-- bench:results:end -->"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- sizes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    blob: int = 512 * MiB
    chunk: int = 16 * MiB
    fan_blob: int = 64 * MiB
    fan_clients: int = 16
    fan_loops: int = 2  # GETs per client per run
    rps_clients: int = 32
    rps_seconds: int = 10
    rps_warmup: int = 2
    wrk_threads: int = 1
    docker_layers: int = 4
    docker_layer: int = 50 * MiB
    rss_blob: int = 2048 * MiB
    reps: int = 3
    max_bg: float = 0.25  # a run during which other processes used more cores than this is redone...
    retries: int = 2  # ...at most this many times


QUICK = Sizes(blob=32 * MiB, chunk=4 * MiB, fan_blob=8 * MiB, fan_clients=16, fan_loops=1, rps_seconds=2,
              rps_warmup=1, docker_layers=2, docker_layer=4 * MiB, rss_blob=128 * MiB, reps=1, retries=0)


# -- /proc ----------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from 3 (state) on


def proc_tree(root: int) -> list[int]:
    """root and all of its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of a live process tree, plus its reaped children."""
    total = 0
    for pid in proc_tree(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if pid == root:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / CLK_TCK


def proc_status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size: pages shared with other processes (fork) counted once in a sum."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory(root: int) -> dict[int, dict[str, int]]:
    return {pid: {"hwm_kb": proc_status_kb(pid, "VmHWM"), "rss_kb": proc_status_kb(pid, "VmRSS")}
            for pid in proc_tree(root)}


# -- registries -----------------------------------------------------------------------------------


class Registry:
    label = ""
    host = "127.0.0.1"
    port = 0
    auth_header: str | None = None
    login: tuple[str, str] | None = None

    def start(self) -> Registry:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        raise NotImplementedError

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def cpu(self) -> float:
        return tree_cpu(self.pid)

    def headers(self) -> dict[str, str]:
        return {"Authorization": self.auth_header} if self.auth_header else {}


class Cargohold(Registry):
    def __init__(self, base: Path, workers: int = 1) -> None:
        self.label = "cargohold" if workers == 1 else f"cargohold-w{workers}"
        self.server = ServerProcess(data_dir=Path(tempfile.mkdtemp(prefix="ch-", dir=base)) / "data",
                                    workers=workers)

    def start(self) -> Cargohold:
        self.server.start()
        self.port = self.server.port
        self.auth_header = self.server.basic_header
        self.login = self.server.auth
        return self

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.server.data_dir, ignore_errors=True)

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid


class Reference(Registry):
    label = "reference"

    def __init__(self, base: Path, auth: str = "none") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ref-", dir=base))
        self.auth = auth
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Reference:
        self.port = free_port()
        auth = ""
        if self.auth == "htpasswd":
            hashed = subprocess.run(["htpasswd", "-Bbn", REF_USER, REF_PASSWORD], check=True,
                                    capture_output=True, text=True).stdout
            (self.dir / "htpasswd").write_text(hashed)
            auth = f"auth:\n  htpasswd:\n    realm: bench\n    path: {self.dir / 'htpasswd'}\n"
            self.auth_header = "Basic " + base64.b64encode(f"{REF_USER}:{REF_PASSWORD}".encode()).decode()
            self.login = (REF_USER, REF_PASSWORD)
        config = (
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            "storage:\n  cache:\n    blobdescriptor: inmemory\n"
            f"  filesystem:\n    rootdirectory: {self.dir / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}:{self.port}\n"
            "  headers:\n    X-Content-Type-Options: [nosniff]\n"
            f"{auth}"
            "health:\n  storagedriver:\n    enabled: false\n")
        cfg = self.dir / "config.yml"
        cfg.write_text(config)
        with open(self.dir / "registry.log", "ab") as out:
            self.proc = subprocess.Popen([REF_BINARY, "serve", str(cfg)], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("reference registry exited:\n"
                                   + (self.dir / "registry.log").read_text(errors="replace"))
            try:
                status, _, _ = request(self, "GET", "/v2/")
                if status in (200, 401):
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("reference registry did not come up")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


@contextlib.contextmanager
def running(*registries: Registry) -> Iterator[tuple[Registry, ...]]:
    started: list[Registry] = []
    try:
        for reg in registries:
            started.append(reg.start())
        yield registries
    finally:
        for reg in started:
            reg.stop()


# -- HTTP client (http.client; bodies go out with sendfile, come in with readinto) -------------------


def connect(reg: Registry) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(reg.host, reg.port, timeout=600)


def request(reg: Registry, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, dict[str, str], bytes]:
    own = conn is None
    c = conn or connect(reg)
    try:
        c.request(method, path, body=body, headers={**reg.headers(), **(headers or {})})
        resp = c.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        if own:
            c.close()


def _location(headers: dict[str, str]) -> str:
    parts = urlsplit(headers["location"])
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _with_query(path: str, extra: str) -> str:
    return path + ("&" if "?" in path else "?") + extra


def send_file(reg: Registry, conn: http.client.HTTPConnection, method: str, path: str, fh: Any,
              offset: int, count: int, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn.putrequest(method, path, skip_accept_encoding=True)
    for key, value in {**reg.headers(), **headers, "Content-Length": str(count)}.items():
        conn.putheader(key, value)
    conn.endheaders()
    if count:
        assert conn.sock is not None
        sent = conn.sock.sendfile(fh, offset, count)
        if sent != count:
            raise RuntimeError(f"sendfile sent {sent} of {count} bytes")
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def _expect(status: int, want: int, what: str, body: bytes) -> None:
    if status != want:
        raise RuntimeError(f"{what}: HTTP {status} (want {want}): {body[:300]!r}")


def push_blob(reg: Registry, repo: str, path: Path, size: int, digest: str, chunk: int = 0) -> None:
    """POST then PUT with the whole body (chunk=0), or POST, PATCH per chunk, PUT."""
    conn = connect(reg)
    try:
        status, hdrs, body = request(reg, "POST", f"/v2/{repo}/blobs/uploads/", conn=conn)
        _expect(status, 202, "start upload", body)
        location = _location(hdrs)
        octet = {"Content-Type": "application/octet-stream"}
        with open(path, "rb") as fh:
            if chunk:
                for offset in range(0, size, chunk):
                    n = min(chunk, size - offset)
                    status, hdrs, body = send_file(reg, conn, "PATCH", location, fh, offset, n, {
                        **octet, "Content-Range": f"{offset}-{offset + n - 1}"})
                    _expect(status, 202, "PATCH", body)
                    location = _location(hdrs)
                status, hdrs, body = send_file(reg, conn, "PUT", _with_query(location, f"digest={digest}"),
                                               fh, 0, 0, {})
            else:
                status, hdrs, body = send_file(reg, conn, "PUT", _with_query(location, f"digest={digest}"),
                                               fh, 0, size, octet)
        _expect(status, 201, "PUT", body)
    finally:
        conn.close()


def pull_blob(reg: Registry, repo: str, digest: str, size: int, buf: memoryview,
              hasher: Any = None, conn: http.client.HTTPConnection | None = None) -> int:
    own = conn is None
    c = conn or connect(reg)
    try:
        c.request("GET", f"/v2/{repo}/blobs/{digest}", headers=reg.headers())
        resp = c.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"GET blob: HTTP {resp.status}: {resp.read()[:300]!r}")
        got = 0
        while True:
            n = resp.readinto(buf)
            if not n:
                break
            got += n
            if hasher is not None:
                hasher.update(buf[:n])
        if got != size:
            raise RuntimeError(f"GET blob: {got} bytes, expected {size}")
        return got
    finally:
        if own:
            c.close()


def put_small_blob(reg: Registry, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    conn = connect(reg)
    try:
        status, hdrs, body = request(reg, "POST", f"/v2/{repo}/blobs/uploads/", conn=conn)
        _expect(status, 202, "start upload", body)
        status, _, body = request(reg, "PUT", _with_query(_location(hdrs), f"digest={digest}"), body=data,
                                  headers={"Content-Type": "application/octet-stream"}, conn=conn)
        _expect(status, 201, "PUT small blob", body)
    finally:
        conn.close()
    return digest


def seed_image(reg: Registry, repo: str, tag: str) -> tuple[str, str]:
    """A tiny OCI image (config + 1 KiB layer) tagged `tag`; returns (manifest digest, layer digest)."""
    layer = os.urandom(1024)
    layer_digest = put_small_blob(reg, repo, layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
    config_digest = put_small_blob(reg, repo, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
    }).encode()
    status, _, body = request(reg, "PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                              headers={"Content-Type": OCI_MANIFEST})
    _expect(status, 201, "PUT manifest", body)
    return "sha256:" + hashlib.sha256(manifest).hexdigest(), layer_digest


# -- test data ------------------------------------------------------------------------------------


@dataclass
class BlobFile:
    path: Path
    size: int
    digest: str


def make_blob(directory: Path, name: str, size: int) -> BlobFile:
    path = directory / name
    hasher = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            piece = os.urandom(min(16 * MiB, left))
            fh.write(piece)
            hasher.update(piece)
            left -= len(piece)
    return BlobFile(path, size, "sha256:" + hasher.hexdigest())


# -- results --------------------------------------------------------------------------------------


@dataclass
class Measurement:
    bench: str
    metric: str
    unit: str
    target: str  # registry label
    runs: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # server CPU seconds per run
    client_cpu: list[float] = field(default_factory=list)  # load generator CPU seconds per run
    other_cpu: list[float] = field(default_factory=list)  # CPU seconds used by anything else on the machine
    walls: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    higher_is_better: bool = True

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu) if self.cpu else None

    @property
    def background_cores(self) -> float | None:
        """Median CPU (in cores) that neither the server nor the load generator used during a run."""
        if not self.other_cpu:
            return None
        return statistics.median(o / w for o, w in zip(self.other_cpu, self.walls, strict=True) if w > 0)

    def to_json(self) -> dict[str, Any]:
        return {"bench": self.bench, "metric": self.metric, "unit": self.unit, "registry": self.target,
                "median": self.median, "runs": r3(self.runs), "higher_is_better": self.higher_is_better,
                "server_cpu_s": r3(self.cpu), "server_cpu_s_median": self.cpu_median,
                "client_cpu_s": r3(self.client_cpu), "other_cpu_s": r3(self.other_cpu),
                "wall_s": r3(self.walls), **({"extra": self.extra} if self.extra else {})}


class Results:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], Measurement] = {}
        self.notes: list[str] = []

    def get(self, bench: str, metric: str, unit: str, target: str, higher: bool = True) -> Measurement:
        key = (bench, metric, target)
        if key not in self.items:
            self.items[key] = Measurement(bench, metric, unit, target, higher_is_better=higher)
        return self.items[key]

    def find(self, bench: str, metric: str, target: str) -> Measurement | None:
        return self.items.get((bench, metric, target))

    def add(self, bench: str, metric: str, unit: str, reg: Registry, value: float, sample: Sample,
            higher: bool = True) -> Measurement:
        m = self.get(bench, metric, unit, reg.label, higher)
        m.runs.append(value)
        m.cpu.append(sample.server)
        m.client_cpu.append(sample.client)
        m.other_cpu.append(sample.other)
        m.walls.append(sample.wall)
        return m


def r3(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]


def r2(values: list[float]) -> list[float]:
    return [round(v, 2) for v in values]


def foreign_cpu() -> float:
    """CPU seconds used so far by user processes outside this benchmark's own process tree, plus steal.

    Kernel threads (writeback, softirq work for loopback traffic) are left out: the benchmark's own
    I/O causes most of their work. A process that exits moves its time into its parent's
    cutime/cstime, so a difference of two sums still counts it.
    """
    ours = set(proc_tree(os.getpid()))
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in ours:
            continue
        fields = _stat_fields(int(entry))
        if fields is None or fields[1] == "2" or entry == "2":  # kernel threads hang off kthreadd (2)
            continue
        total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    steal = int(Path("/proc/stat").read_text().split("\n", 1)[0].split()[8])
    return (total + steal) / CLK_TCK


def own_cpu() -> float:
    """CPU seconds of this process and of its reaped children (wrk, docker CLI)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Sample:
    wall: float
    server: float  # CPU seconds of the server's process tree
    client: float  # CPU seconds of the load generator (this process, its children, extra trees)
    other: float  # CPU of user processes outside the benchmark, plus steal
    result: Any = None


def measured(reg: Registry, fn: Callable[[], Any], client_pids: tuple[int, ...] = ()) -> Sample:
    """Run fn and account for the CPU the server, the client and everything else used meanwhile."""
    def client() -> float:
        return own_cpu() + sum(tree_cpu(pid) for pid in client_pids)

    foreign0, server0, client0 = foreign_cpu(), reg.cpu(), client()
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    server, cli = reg.cpu() - server0, client() - client0
    return Sample(wall, server, cli, max(0.0, foreign_cpu() - foreign0), out)


def measured_quiet(reg: Registry, fn: Callable[[], Any], sz: Sizes, sync: bool = False) -> Sample:
    """measured(), redone (up to sz.retries times) while other processes disturbed the run."""
    for attempt in range(sz.retries + 1):
        if sync:
            os.sync()  # no writeback left over from an earlier run lands in this one
        s = measured(reg, fn)
        load = s.other / s.wall if s.wall > 0 else 0.0
        if load <= sz.max_bg or attempt == sz.retries:
            return s
        log(f"  {reg.label}: other processes used {load:.2f} cores during the run; running it again")
        time.sleep(5)
    raise AssertionError("unreachable")


def background_cores(seconds: float = 3.0) -> float:
    foreign0 = foreign_cpu()
    time.sleep(seconds)
    return (foreign_cpu() - foreign0) / seconds


def wait_for_quiet(limit_s: float, threshold: float = 0.15) -> float:
    """Wait (at most limit_s) until the machine is nearly idle; returns the last background load."""
    deadline = time.monotonic() + limit_s
    load = background_cores()
    while load > threshold and time.monotonic() < deadline:
        log(f"machine busy ({load:.2f} cores used by other processes); waiting for it to calm down")
        load = background_cores(10.0)
    return load


def alternate(regs: list[Registry], rep: int) -> list[Registry]:
    return regs if rep % 2 == 0 else list(reversed(regs))


def _log_sample(what: str, reg: Registry, figure: str, s: Sample) -> None:
    log(f"{what:15} {reg.label:12} {figure:>14}  server cpu {s.server:5.2f}s  client cpu {s.client:5.2f}s  "
        f"other cpu {s.other:5.2f}s  wall {s.wall:6.2f}s")


# -- benchmarks: blob push / pull / fan-out ---------------------------------------------------------


def bench_push(regs: list[Registry], blob: BlobFile, sz: Sizes, res: Results) -> None:
    for mode, chunk in (("monolithic", 0), ("chunked", sz.chunk)):
        for rep in range(sz.reps):
            for reg in alternate(regs, rep):
                repo = f"bench/push-{mode}-{rep}"
                s = measured_quiet(reg, lambda r=reg, p=repo, c=chunk: push_blob(
                    r, p, blob.path, blob.size, blob.digest, c), sz, sync=True)
                res.add(f"push_{mode}", "throughput", "MB/s", reg, blob.size / MB / s.wall, s)
                _log_sample(f"push {mode}", reg, f"{blob.size / MB / s.wall:.1f} MB/s", s)


def bench_pull(regs: list[Registry], blob: BlobFile, sz: Sizes, res: Results) -> None:
    buf = memoryview(bytearray(4 * MiB))
    for reg in regs:  # make sure the blob is there and verify its bytes once (not timed)
        push_blob(reg, "bench/pull", blob.path, blob.size, blob.digest)
        hasher = hashlib.sha256()
        pull_blob(reg, "bench/pull", blob.digest, blob.size, buf, hasher)
        if "sha256:" + hasher.hexdigest() != blob.digest:
            raise RuntimeError(f"{reg.label}: pulled blob does not match its digest")
    os.sync()
    for rep in range(sz.reps):
        for reg in alternate(regs, rep):
            s = measured_quiet(reg, lambda r=reg: pull_blob(r, "bench/pull", blob.digest, blob.size, buf), sz)
            res.add("pull", "throughput", "MB/s", reg, blob.size / MB / s.wall, s)
            _log_sample("pull", reg, f"{blob.size / MB / s.wall:.1f} MB/s", s)


def fan_out(reg: Registry, repo: str, blob: BlobFile, clients: int, loops: int) -> int:
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []
    totals = [0] * clients

    def worker(i: int) -> None:
        buf = memoryview(bytearray(4 * MiB))
        conn = connect(reg)
        try:
            barrier.wait()
            for _ in range(loops):
                totals[i] += pull_blob(reg, repo, blob.digest, blob.size, buf, conn=conn)
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"fan-out: {errors[0]!r}")
    return sum(totals)


def bench_fanout(regs: list[Registry], blob: BlobFile, sz: Sizes, res: Results) -> None:
    for reg in regs:
        push_blob(reg, "bench/fanout", blob.path, blob.size, blob.digest)
        fan_out(reg, "bench/fanout", blob, sz.fan_clients, 1)  # warm the page cache and connections
    os.sync()
    for rep in range(sz.reps):
        for reg in alternate(regs, rep):
            s = measured_quiet(reg, lambda r=reg: fan_out(r, "bench/fanout", blob, sz.fan_clients,
                                                          sz.fan_loops), sz)
            res.add("fanout", "throughput", "MB/s", reg, s.result / MB / s.wall, s)
            _log_sample(f"fan-out x{sz.fan_clients}", reg, f"{s.result / MB / s.wall:.1f} MB/s", s)


# -- benchmarks: request rate with wrk --------------------------------------------------------------

WRK_LUA = """
wrk.method = "{method}"
{headers}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def run_wrk(reg: Registry, method: str, path: str, headers: dict[str, str], seconds: int, sz: Sizes,
            workdir: Path) -> dict[str, Any]:
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in {**reg.headers(), **headers}.items()]
    script = workdir / f"wrk-{reg.label}-{method}.lua"
    script.write_text(WRK_LUA.format(method=method, headers="\n".join(lines)))
    out = subprocess.run(["wrk", "-t", str(sz.wrk_threads), "-c", str(sz.rps_clients), "-d", f"{seconds}s",
                          "--timeout", "10s", "-s", str(script), f"http://{reg.address}{path}"],
                         capture_output=True, text=True, timeout=seconds + 60)
    found = re.search(r"^BENCH_JSON (.*)$", out.stdout, re.M)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    data: dict[str, Any] = json.loads(found[1])
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    if errors:
        raise RuntimeError(f"wrk against {reg.label} {method} {path}: {errors} errors: {data}")
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    return data


class _LoadConn(asyncio.Protocol):
    """One keep-alive connection that sends the same request again as soon as a response is complete."""

    def __init__(self, request: bytes, head: bool, stats: dict[str, Any], deadline: float,
                 done: asyncio.Future[None]) -> None:
        self.request, self.head, self.stats, self.deadline, self.done = request, head, stats, deadline, done
        self.buf = b""
        self.need = -1  # bytes of the current response still expected after its headers; -1: in headers
        self.started = 0.0
        self.status = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.started = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head, self.buf = self.buf[:end], self.buf[end + 4:]
                self.status = int(head[9:12])
                length = 0
                if not self.head:
                    found = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
                    length = int(found[1]) if found else 0
                self.need = length
            if len(self.buf) < self.need:
                return
            self.buf = self.buf[self.need:]
            self.need = -1
            now = time.perf_counter()
            self.stats["latencies"].append(now - self.started)
            if self.status != 200:
                self.stats["errors"] += 1
            if now >= self.deadline:
                assert self.transport is not None
                self.transport.close()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if time.perf_counter() < self.deadline:
            self.stats["errors"] += 1
        if not self.done.done():
            self.done.set_result(None)


def run_asyncio_load(reg: Registry, method: str, path: str, headers: dict[str, str], seconds: float,
                     conns: int) -> dict[str, Any]:
    """A closed-loop load generator (asyncio protocols, one thread) for what wrk cannot do: HEAD."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {reg.address}",
             *(f"{k}: {v}" for k, v in {**reg.headers(), **headers}.items())]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    stats: dict[str, Any] = {"latencies": [], "errors": 0}

    async def main() -> float:
        loop = asyncio.get_running_loop()
        deadline = time.perf_counter() + seconds
        futures = []
        t0 = time.perf_counter()
        for _ in range(conns):
            done: asyncio.Future[None] = loop.create_future()
            futures.append(done)
            await loop.create_connection(
                lambda d=done: _LoadConn(raw, method == "HEAD", stats, deadline, d), reg.host, reg.port)
        await asyncio.wait_for(asyncio.gather(*futures), seconds + 30)
        return time.perf_counter() - t0

    wall = asyncio.run(main())
    lat = sorted(stats["latencies"])
    if stats["errors"] or not lat:
        raise RuntimeError(f"load against {reg.label} {method} {path}: {stats['errors']} errors")

    def pct(q: float) -> int:
        return int(lat[min(len(lat) - 1, int(q / 100 * len(lat)))] * 1e6)

    return {"requests": len(lat), "rps": len(lat) / wall, "p50_us": pct(50), "p90_us": pct(90),
            "p99_us": pct(99), "max_us": int(lat[-1] * 1e6)}


def bench_rate(regs: list[Registry], which: list[str], sz: Sizes, res: Results, workdir: Path,
               client: str = "wrk") -> None:
    targets: dict[str, dict[str, tuple[str, str, dict[str, str]]]] = {}
    for reg in regs:
        manifest_digest, layer_digest = seed_image(reg, "bench/rate", "latest")
        # Sanity: both endpoints answer 200 with the expected digest before any load.
        status, hdrs, body = request(reg, "GET", "/v2/bench/rate/manifests/latest",
                                     headers={"Accept": OCI_MANIFEST})
        _expect(status, 200, "GET manifest", body)
        if hdrs.get("docker-content-digest") != manifest_digest:
            raise RuntimeError(f"{reg.label}: manifest digest mismatch")
        status, _, body = request(reg, "HEAD", f"/v2/bench/rate/blobs/{layer_digest}")
        _expect(status, 200, "HEAD blob", body)
        targets[reg.label] = {
            "manifest": ("GET", "/v2/bench/rate/manifests/latest", {"Accept": OCI_MANIFEST}),
            "head": ("HEAD", f"/v2/bench/rate/blobs/{layer_digest}", {}),
        }

    def load(reg: Registry, bench: str, seconds: int) -> dict[str, Any]:
        method, path, headers = targets[reg.label][bench]
        if method == "HEAD" or client == "asyncio":  # wrk and h2load wait for a body after HEAD
            return run_asyncio_load(reg, method, path, headers, seconds, sz.rps_clients)
        return run_wrk(reg, method, path, headers, seconds, sz, workdir)

    for bench in which:
        name = {"manifest": "manifest_get", "head": "blob_head"}[bench]
        for reg in regs:
            load(reg, bench, sz.rps_warmup)
        for rep in range(sz.reps):
            for reg in alternate(regs, rep):
                s = measured_quiet(reg, lambda r=reg, b=bench: load(r, b, sz.rps_seconds), sz)
                data = s.result
                res.add(name, "rate", "req/s", reg, data["rps"], s)
                lat = res.add(name, "p99", "ms", reg, data["p99_us"] / 1000, s, higher=False)
                lat.extra.setdefault("p50_ms", []).append(data["p50_us"] / 1000)
                _log_sample(name, reg, f"{data['rps']:.0f} req/s", s)
                log(f"{'':15} {'':12} p50 {data['p50_us'] / 1000:.2f} ms  "
                    f"p90 {data['p90_us'] / 1000:.2f} ms  p99 {data['p99_us'] / 1000:.2f} ms  "
                    f"max {data['max_us'] / 1000:.1f} ms")


# -- benchmarks: docker push / pull ------------------------------------------------------------------


class Dockerd:
    def __init__(self, base: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dockerd-", dir=base))
        short = Path(tempfile.mkdtemp(prefix="chbd-", dir="/tmp"))  # socket paths must stay short
        self.short = short
        self.sock = short / "d.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}",
                    "DOCKER_CONFIG": str(self.root / "cli")}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Dockerd:
        with open(self.root / "dockerd.log", "ab") as out:
            self.proc = subprocess.Popen(
                ["dockerd", "--storage-driver=vfs", "--iptables=false", "--ip6tables=false", "--bridge=none",
                 "--data-root", str(self.root / "data"), "--exec-root", str(self.short / "x"),
                 "--pidfile", str(self.short / "d.pid"), "-H", f"unix://{self.sock}", "--log-level=warn"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dockerd exited:\n" + (self.root / "dockerd.log").read_text()[-3000:])
            if self.sock.exists() and self.run("version", check=False).returncode == 0:
                return self
            time.sleep(0.3)
        raise RuntimeError("dockerd did not come up")

    def run(self, *args: str, check: bool = True,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(["docker", *args], env=self.env, input=stdin, capture_output=True, timeout=900)
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.decode(errors='replace')[-2000:]}")
        return done

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.short, ignore_errors=True)


def image_archive(path: Path, layers: int, layer_size: int, tag: str) -> None:
    """A docker-archive tar (as `docker save` writes) of a FROM-scratch image with random-data layers."""
    members: dict[str, bytes] = {}
    diff_ids, names = [], []
    for i in range(layers):
        layer = io.BytesIO()
        with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"data/layer{i}.bin")
            info.size, info.mtime, info.mode = layer_size, 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(os.urandom(layer_size)))
        data = layer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        diff_ids.append(f"sha256:{digest}")
        names.append(f"{digest}/layer.tar")
        members[names[-1]] = data
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                         "config": {"Cmd": ["/nothing"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
                                     for i in range(layers)]}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    members[config_name] = config
    members["manifest.json"] = json.dumps([{"Config": config_name, "RepoTags": [tag],
                                            "Layers": names}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))


def bench_docker(make: dict[str, Callable[[], Registry]], sz: Sizes, res: Results, base: Path) -> None:
    if not (shutil.which("dockerd") and shutil.which("docker")):
        res.notes.append("docker: dockerd/docker not installed; skipped")
        log("docker: skipped (no dockerd)")
        return
    daemon = Dockerd(base).start()
    try:
        archive = base / "image.tar"
        local = "chbench/image:latest"
        image_archive(archive, sz.docker_layers, sz.docker_layer, local)
        daemon.run("load", "-i", str(archive))
        archive.unlink()
        image_bytes = sz.docker_layers * sz.docker_layer
        for rep in range(sz.reps):
            labels = list(make)
            for label in labels if rep % 2 == 0 else reversed(labels):
                reg = make[label]().start()  # a fresh, empty registry for each push
                try:
                    if reg.login:
                        daemon.run("login", reg.address, "-u", reg.login[0], "--password-stdin",
                                   stdin=reg.login[1].encode())
                    remote = f"{reg.address}/bench/image:{rep}"
                    daemon.run("tag", local, remote)
                    os.sync()
                    s = measured(reg, lambda r=remote: daemon.run("push", r), (daemon.pid,))
                    res.add("docker_push", "wall", "s", reg, s.wall, s, higher=False)
                    _log_sample("docker push", reg, f"{s.wall:.2f} s", s)
                    daemon.run("rmi", local, remote)  # the image and its layers leave the daemon
                    os.sync()
                    s = measured(reg, lambda r=remote: daemon.run("pull", r), (daemon.pid,))
                    res.add("docker_pull", "wall", "s", reg, s.wall, s, higher=False)
                    _log_sample("docker pull", reg, f"{s.wall:.2f} s", s)
                    daemon.run("tag", remote, local)
                    daemon.run("rmi", remote)
                finally:
                    reg.stop()
        res.notes.append(f"docker: image of {sz.docker_layers} random-data layers x "
                         f"{sz.docker_layer // MiB} MiB = {image_bytes // MiB} MiB (uncompressed; docker "
                         "gzips layers on push); dockerd with vfs storage; fresh registry per push")
    finally:
        daemon.stop()


# -- benchmark: cargohold's peak memory while receiving a big blob ----------------------------------


def bench_rss(make: dict[str, Callable[[], Registry]], blob: BlobFile, sz: Sizes, res: Results) -> None:
    for factory in make.values():
        reg = factory().start()
        try:
            peak_rss = [0]
            stop = threading.Event()

            def sample(r: Registry = reg, stop: threading.Event = stop,
                       peak_rss: list[int] = peak_rss) -> None:
                while not stop.wait(0.05):
                    mem = tree_memory(r.pid)
                    peak_rss[0] = max(peak_rss[0], sum(v["rss_kb"] for v in mem.values()))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            walls = {}
            for mode, chunk in (("monolithic", 0), ("chunked", sz.chunk)):
                s = measured(reg, lambda r=reg, c=chunk, m=mode: push_blob(
                    r, f"bench/rss-{m}", blob.path, blob.size, blob.digest, c))
                walls[mode] = round(blob.size / MB / s.wall, 1)
            stop.set()
            sampler.join()
            mem = tree_memory(reg.pid)
            hwm = {pid: v["hwm_kb"] / 1024 for pid, v in mem.items()}
            m = res.get("rss", "peak_hwm_max_process", "MiB", reg.label, higher=False)
            m.runs.append(max(hwm.values()))
            m.extra = {"hwm_mib_per_process": {("main" if p == reg.pid else f"child {p}"): round(v, 1)
                                               for p, v in hwm.items()},
                       "hwm_mib_sum": round(sum(hwm.values()), 1),
                       "pss_mib_sum_after": round(sum(pss_kb(p) for p in mem) / 1024, 1),
                       "sampled_peak_rss_sum_mib": round(peak_rss[0] / 1024, 1),
                       "push_mb_s": walls}
            total = res.get("rss", "peak_hwm_sum", "MiB", reg.label, higher=False)
            total.runs.append(sum(hwm.values()))
            log(f"rss {blob.size // MiB} MiB blob {reg.label:12} VmHWM per process "
                f"{m.extra['hwm_mib_per_process']}"
                f"  sum {m.extra['hwm_mib_sum']} MiB  push MB/s {walls}")
        finally:
            reg.stop()


# -- report ---------------------------------------------------------------------------------------

# bench, metric, title, (target text, check(ratio) -> bool) or None
ROWS: list[tuple[str, str, str, tuple[str, Callable[[float], bool]] | None]] = [
    ("push_monolithic", "throughput", "blob push, monolithic (MB/s)", (">= 4x", lambda r: r >= 4)),
    ("push_chunked", "throughput", "blob push, chunked (MB/s)", (">= 4x", lambda r: r >= 4)),
    ("pull", "throughput", "blob pull (MB/s)", (">= 1x", lambda r: r >= 1)),
    ("fanout", "throughput", "blob pull, 16 clients aggregate (MB/s)", (">= 1x", lambda r: r >= 1)),
    ("manifest_get", "rate", "manifest GET, 32 conns (req/s)", (">= 3x", lambda r: r >= 3)),
    ("manifest_get", "p99", "manifest GET p99 (ms)", ("< 1/3", lambda r: r < 1 / 3)),
    ("blob_head", "rate", "blob HEAD, 32 conns (req/s)", (">= 3x", lambda r: r >= 3)),
    ("blob_head", "p99", "blob HEAD p99 (ms)", ("< 1/3", lambda r: r < 1 / 3)),
    ("docker_push", "wall", "docker push (s)", None),
    ("docker_pull", "wall", "docker pull (s)", None),
    ("rss", "peak_hwm_max_process", "peak RSS, largest process (MiB)", None),
    ("rss", "peak_hwm_sum", "peak RSS, all server processes (MiB)", None),
]
RSS_TARGET_MIB = 200


def _fmt(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table_rows(res: Results) -> list[list[str]]:
    labels = ["reference", "cargohold", "cargohold-w2"]
    rows = []
    for bench, metric, title, target in ROWS:
        ms = {lab: res.find(bench, metric, lab) for lab in labels}
        if not any(ms.values()):
            continue
        ref = ms["reference"]
        cells = [title]
        for lab in labels:
            m = ms[lab]
            cpu = None if m is None or metric == "p99" else m.cpu_median  # p99 shares the rate's runs
            cells += ["-", "-"] if m is None else [_fmt(m.median), _fmt(cpu)]
        ratios, met = [], []
        for lab in labels[1:]:
            m = ms[lab]
            if m is None or ref is None or not ref.median:
                continue
            w2 = " (w2)" if lab.endswith("w2") else ""
            ratio = m.median / ref.median
            ratios.append(f"{ratio:.2f}x{w2}")
            if target is not None:
                met.append(("yes" if target[1](ratio) else "NO") + w2)
        target_text = target[0] if target else ""
        if bench == "rss":
            m = ms["cargohold"]
            target_text = f"< {RSS_TARGET_MIB} MiB"
            met = [] if m is None else ["yes" if m.median < RSS_TARGET_MIB else "NO"]
        background = [b for m in ms.values() if m is not None and (b := m.background_cores) is not None]
        cells += [", ".join(ratios) or "-", target_text, ", ".join(met),
                  f"{max(background):.2f}" if background else "-"]
        rows.append(cells)
    return rows


HEADER = ["benchmark", "reference", "cpu s", "cargohold w1", "cpu s", "cargohold w2", "cpu s",
          "cargohold/ref", "target", "met", "bg cores"]


def print_table(res: Results) -> None:
    rows = [HEADER, *table_rows(res)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    for n, row in enumerate(rows):
        cells = zip(row, widths, strict=True)
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def markdown(res: Results, meta: dict[str, Any]) -> str:
    versions = meta["versions"]
    out = [f"Run of {meta['date']} on {meta['machine']}.", "",
           "| " + " | ".join(versions.keys()) + " |", "|" + "---|" * len(versions),
           "| " + " | ".join(versions.values()) + " |", "",
           f"Command: `{meta['command']}` ({meta['reps']} runs per figure, medians shown). "
           "*cpu s*: the server's CPU seconds per run (user + system over its whole process tree, median). "
           "*bg cores*: CPU used meanwhile by user processes outside the benchmark (plus steal), in "
           "cores, the worst median of the row; above ~0.1 the figures are disturbed.", "",
           "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(row) + " |" for row in table_rows(res)]
    out += ["", "Settings and notes:", ""]
    out += [f"- {note}" for note in meta["notes"] + res.notes]
    out += ["", "<details><summary>Individual runs</summary>", ""]
    for m in res.items.values():
        line = f"- {m.bench} {m.metric} ({m.unit}), {m.target}: runs {r2(m.runs)}"
        if m.cpu and m.metric != "p99":  # a p99 comes from the same runs as the rate before it
            line += (f"; server cpu s {r2(m.cpu)}; client cpu s {r2(m.client_cpu)}; "
                     f"other cpu s {r2(m.other_cpu)}")
        if m.extra:
            line += "; " + "; ".join(f"{k} {v}" for k, v in m.extra.items())
        out.append(line)
    out += ["", "</details>"]
    return "\n".join(out) + "\n"


def write_docs(path: Path, section: str) -> None:
    empty = f"# Benchmarks\n\n## Results\n\n{RESULTS_START}\n{RESULTS_END}\n"
    text = path.read_text() if path.exists() else empty
    if RESULTS_START not in text:
        text += f"\n## Results\n\n{RESULTS_START}\n{RESULTS_END}\n"
    head, rest = text.split(RESULTS_START, 1)
    _, tail = rest.split(RESULTS_END, 1)
    path.write_text(f"{head}{RESULTS_START}\n{section}{RESULTS_END}{tail}")


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "n/a"


def metadata(args: argparse.Namespace, sz: Sizes) -> dict[str, Any]:
    import httptools
    import uvloop

    import cargohold

    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PHYS_PAGES") * PAGE / (1 << 30)
    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    rev = _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB RAM, Debian {debian}, "
                   f"Linux {platform.release()}",
        "versions": {
            "cargohold": f"{cargohold.__version__} ({rev}{', src modified' if dirty else ''})",
            "server": f"cargohold's own (httptools {httptools.__version__}, uvloop {uvloop.__version__})",
            "python": platform.python_version(),
            "reference": " ".join(_version([REF_BINARY, "--version"]).split()[-2:]),
            "docker": _version(["docker", "--version"]).replace("Docker version ", ""),
            "wrk": _version(["wrk", "--version"]).split(" [")[0],
        },
        "command": " ".join(["bench/run.py", *sys.argv[1:]]),
        "reps": sz.reps,
        "notes": [
            "reference = CNCF Distribution (Debian docker-registry), filesystem storage, in-memory "
            f"blob-descriptor cache, access log off, log level warn, auth: {args.ref_auth}; cargohold = "
            "`cargohold serve --workers N`, SQLite + filesystem, every request authenticated with HTTP "
            "Basic (the root access key)",
            f"push/pull: one {sz.blob // MiB} MiB random blob read from a temp file; client = http.client on "
            "one keep-alive connection, body sent with sendfile(2), received with readinto into a 4 MiB "
            f"buffer; chunked = PATCH in {sz.chunk // MiB} MiB chunks with Content-Range; MB = 10^6 bytes; "
            "the same blob is pushed in every run (a new repository each time); os.sync() before each push",
            f"fan-out: {sz.fan_clients} threads, one connection each, each GETs the {sz.fan_blob // MiB} MiB "
            f"blob {sz.fan_loops}x per run; figure = all bytes / wall time",
            f"req/s: {sz.rps_clients} connections, {sz.rps_seconds} s per run after a {sz.rps_warmup} s "
            f"warm-up; manifest GET with {args.rate_client} ({sz.wrk_threads} thread), blob HEAD with the "
            "script's asyncio client (wrk and h2load hang on HEAD responses); any non-2xx answer or socket "
            "error fails the run; latency is closed-loop at saturation",
            f"peak RSS: VmHWM of each server process after receiving a {sz.rss_blob // MiB} MiB blob "
            "monolithically and then chunked (fresh server)",
            f"the load generators share the machine's {os.cpu_count()} cores with the servers; a run during "
            f"which other processes used more than {sz.max_bg} cores is redone (at most {sz.retries} times)"
            + (f"; servers and clients ran at nice {args.nice}" if args.nice else ""),
        ],
    }


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, 1 repetition (smoke run)")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(ALL_BENCHES)}")
    p.add_argument("--json", metavar="OUT", help="write all measurements as JSON to OUT")
    p.add_argument("--reps", type=int, help="repetitions per figure (default 3; --quick: 1)")
    p.add_argument("--ref-auth", choices=("none", "htpasswd"), default="none",
                   help="reference registry auth (default none: the registry's fastest setting)")
    p.add_argument("--rate-client", choices=("wrk", "asyncio"), default="wrk",
                   help="load generator for manifest GET (blob HEAD always uses the asyncio one)")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="first wait up to SECONDS for other processes to leave the machine nearly idle")
    p.add_argument("--nice", type=int, default=0,
                   help="run the benchmark (servers and clients alike) at this nice value; a negative one "
                        "(root only) shields the figures from other processes on a shared machine")
    p.add_argument("--workdir", default=None, help="directory for data and servers (default: a temp dir)")
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"), help="markdown file to update")
    p.add_argument("--write-docs", action=argparse.BooleanOptionalAction, default=None,
                   help="update the results section of --docs (default: only on a full, non-quick run)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that servers and temp files are cleaned up
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by every server, client and thread
    sz = QUICK if args.quick else Sizes()
    if args.reps:
        sz = Sizes(**{**sz.__dict__, "reps": args.reps})
    which = [b.strip() for b in args.only.split(",") if b.strip()] or list(ALL_BENCHES)
    unknown = set(which) - set(ALL_BENCHES)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if not Path(REF_BINARY).exists():
        print(f"{REF_BINARY} not found: apt-get install docker-registry", file=sys.stderr)
        return 2
    if "manifest" in which and args.rate_client == "wrk" and not shutil.which("wrk"):
        print("wrk not found: apt-get install wrk (or use --rate-client asyncio)", file=sys.stderr)
        return 2
    write = args.write_docs if args.write_docs is not None else (not args.quick and not args.only)

    before = wait_for_quiet(args.wait_idle) if args.wait_idle else background_cores()
    log(f"background load before the run: {before:.2f} cores")
    base = Path(tempfile.mkdtemp(prefix="cargohold-bench-", dir=args.workdir))
    res = Results()
    meta = metadata(args, sz)
    started = time.monotonic()
    try:
        log(f"work dir {base}; sizes {sz}")
        ref_auth = args.ref_auth
        regs_w1: list[Registry] = [Reference(base, ref_auth), Cargohold(base, 1)]
        if {"push", "pull"} & set(which):
            blob = make_blob(base, "blob.bin", sz.blob)
            with running(*regs_w1):
                if "push" in which:
                    bench_push(regs_w1, blob, sz, res)
                if "pull" in which:
                    bench_pull(regs_w1, blob, sz, res)
            blob.path.unlink()
        if "fanout" in which:
            fan = make_blob(base, "fan.bin", sz.fan_blob)
            regs = [Reference(base, ref_auth), Cargohold(base, 1)]
            with running(*regs):
                bench_fanout(regs, fan, sz, res)
        rate = [b for b in ("manifest", "head") if b in which]
        if rate:
            regs = [Reference(base, ref_auth), Cargohold(base, 1), Cargohold(base, 2)]
            with running(*regs):
                bench_rate(regs, rate, sz, res, base, args.rate_client)
        if "docker" in which:
            bench_docker({"reference": lambda: Reference(base, ref_auth),
                          "cargohold": lambda: Cargohold(base, 1)}, sz, res, base)
        if "rss" in which:
            big = make_blob(base, "big.bin", sz.rss_blob)
            bench_rss({"cargohold": lambda: Cargohold(base, 1),
                       "reference": lambda: Reference(base, ref_auth)}, big, sz, res)
            big.path.unlink()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    after = background_cores()
    log(f"done in {time.monotonic() - started:.0f} s; background load after the run: {after:.2f} cores")
    res.notes.append(f"background load (CPU used by other processes, in cores) just before the run "
                     f"{before:.2f}, just after {after:.2f}; run took {time.monotonic() - started:.0f} s")
    print()
    print_table(res)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "notes": res.notes,
                                               "measurements": [m.to_json() for m in res.items.values()]},
                                              indent=2))
    if write:
        write_docs(Path(args.docs), markdown(res, meta))
        log(f"wrote results to {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
