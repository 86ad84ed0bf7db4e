"""`cargohold serve` on its own HTTP server (http/server.py, http/supervisor.py), as a process.

A worker that dies is replaced; SIGTERM lets a request under way finish; the granian fallback
(`CARGOHOLD_HTTP_SERVER=granian`) still serves a push and a pull. The protocol itself is tested
in tests/unit/test_http_server.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import digest, random_bytes, unique_repo
from tests.api.test_workers import _children
from tests.support.server import ServerProcess, cleanup, temp_server

pytestmark = pytest.mark.timeout(120)


def _push_and_pull(server: ServerProcess, data: bytes, chunk: int = 0) -> None:
    repo, d = unique_repo("serving"), digest(data)
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=60) as client:
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = r.headers["location"]
        if chunk:
            for start in range(0, len(data), chunk):
                part = data[start:start + chunk]
                r = client.patch(location, content=part, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{start + len(part) - 1}"})
                assert r.status_code == 202, r.text
                location = r.headers["location"]
            r = client.put(location, params={"digest": d})
        else:
            r = client.put(location, params={"digest": d}, content=data,
                           headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        pulled = client.get(f"/v2/{repo}/blobs/{d}")
        assert pulled.status_code == 200 and pulled.content == data


def test_a_dead_worker_is_replaced(two_workers: ServerProcess) -> None:
    assert two_workers.proc is not None
    before = _children(two_workers.proc.pid)
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = _children(two_workers.proc.pid)
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no new worker: {before} -> {_children(two_workers.proc.pid)}")
    for _ in range(4):  # both workers answer (connections spread over them)
        _push_and_pull(two_workers, random_bytes(300_000))


def test_sigterm_lets_an_upload_under_way_finish(two_workers: ServerProcess) -> None:
    """A monolithic push whose body is still arriving when the server is told to stop."""
    data = random_bytes(4 << 20)
    repo, d = unique_repo("stopping"), digest(data)
    with httpx.Client(base_url=two_workers.url, auth=two_workers.auth, timeout=60) as client:
        location = client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]

    def body() -> Iterator[bytes]:
        yield data[:1 << 20]
        time.sleep(0.5)  # the server gets SIGTERM now
        yield data[1 << 20:]

    assert two_workers.proc is not None
    threading.Timer(0.25, two_workers.proc.send_signal, (signal.SIGTERM,)).start()
    with httpx.Client(base_url=two_workers.url, auth=two_workers.auth, timeout=60) as client:
        r = client.put(location, params={"digest": d}, content=body(),
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert two_workers.proc.wait(30) == 0
    two_workers.proc = None
    two_workers.start()  # and the blob is there after the restart
    with httpx.Client(base_url=two_workers.url, auth=two_workers.auth, timeout=60) as client:
        assert client.get(f"/v2/{repo}/blobs/{d}").content == data


def test_the_granian_fallback_still_serves() -> None:
    srv = temp_server(env={"CARGOHOLD_HTTP_SERVER": "granian"})
    try:
        srv.start()
        _push_and_pull(srv, random_bytes(3 << 20))
        _push_and_pull(srv, random_bytes(3 << 20), chunk=1 << 20)
    finally:
        cleanup(srv)


def test_concurrent_downloads_sent_with_sendfile_are_exact(two_workers: ServerProcess) -> None:
    """Downloads that overlap in one worker go out with sendfile(2) (FileSend); whole and ranged."""
    data = random_bytes(6 << 20)
    repo, d = unique_repo("fanout"), digest(data)
    with httpx.Client(base_url=two_workers.url, auth=two_workers.auth, timeout=60) as client:
        location = client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
        assert client.put(location, params={"digest": d}, content=data).status_code == 201
    ranges = [None, (0, 99), (5 << 20, (6 << 20) - 1), (12345, 3 << 20), None, None, (1, 1), None]
    results: dict[int, bytes] = {}

    def fetch(i: int, span: tuple[int, int] | None) -> None:
        headers = {"Range": f"bytes={span[0]}-{span[1]}"} if span else {}
        with httpx.Client(base_url=two_workers.url, auth=two_workers.auth, timeout=60) as client:
            for _ in range(3):
                r = client.get(f"/v2/{repo}/blobs/{d}", headers=headers)
                assert r.status_code == (206 if span else 200)
                results[i] = r.content

    threads = [threading.Thread(target=fetch, args=(i, span)) for i, span in enumerate(ranges)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, span in enumerate(ranges):
        assert results[i] == (data[span[0]:span[1] + 1] if span else data), i
