"""`cargohold serve --workers 2`: an upload session is state in the metadata store, not in a process.

A chunked upload whose PATCH requests come in on separate connections is served by whichever
worker accepts each one; the test tells which worker wrote each chunk from the workers'
/proc/<pid>/io write counters and checks both took part. Then an upload survives a restart of the
whole server (graceful and killed) half-way: the session, its offset and the staged bytes are all
still there, and the blob completes with the right digest.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import digest, random_bytes, unique_repo
from tests.support.server import ServerProcess

CHUNK = 256 * 1024
OCTET = {"Content-Type": "application/octet-stream"}

pytestmark = pytest.mark.timeout(120)


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return sorted(kids)


def _written(pid: int) -> int | None:
    """Bytes the process has written (files and sockets), or None when /proc does not say."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _fresh(server: ServerProcess) -> httpx.Client:
    """A client of its own, so the request goes out on a new connection (any worker may accept it)."""
    return httpx.Client(base_url=server.url, auth=server.auth, timeout=30)


def _start(server: ServerProcess, repo: str) -> str:
    with _fresh(server) as c:
        r = c.post(f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202, r.text
    return r.headers["location"]


def _patch(server: ServerProcess, location: str, chunk: bytes, start: int) -> str:
    with _fresh(server) as c:
        r = c.patch(location, content=chunk,
                    headers={**OCTET, "Content-Range": f"{start}-{start + len(chunk) - 1}"})
    assert r.status_code == 202, r.text
    assert r.headers["range"].removeprefix("bytes=") == f"0-{start + len(chunk) - 1}"
    return r.headers["location"]


def _offset(server: ServerProcess, location: str) -> int:
    with _fresh(server) as c:
        r = c.get(location)
    assert r.status_code == 204, r.text
    return int(r.headers["range"].removeprefix("bytes=").split("-")[1]) + 1


def _get_blob(server: ServerProcess, repo: str, d: str) -> bytes:
    with _fresh(server) as c:
        r = c.get(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200, r.text
    assert r.headers["docker-content-digest"] == d
    return r.content


def test_chunked_upload_spread_over_workers(two_workers: ServerProcess) -> None:
    server = two_workers
    assert server.proc is not None
    workers = _children(server.proc.pid)
    assert len(workers) == 2, workers

    repo = unique_repo("workers")
    chunks = [random_bytes(CHUNK) for _ in range(16)]
    data = b"".join(chunks)
    location = _start(server, repo)
    handled_by: list[list[int]] = []
    offset = 0
    for chunk in chunks:
        before = {pid: _written(pid) for pid in workers}
        location = _patch(server, location, chunk, offset)
        after = {pid: _written(pid) for pid in workers}
        offset += len(chunk)
        handled_by.append([pid for pid in workers
                           if before[pid] is not None and after[pid] is not None
                           and after[pid] - before[pid] >= len(chunk)])  # type: ignore[operator]
        assert _offset(server, location) == offset  # the status, too, from any worker

    if all(_written(pid) is not None for pid in workers):
        assert all(len(pids) == 1 for pids in handled_by), handled_by
        assert {pids[0] for pids in handled_by} == set(workers), handled_by  # both took chunks

    d = digest(data)
    with _fresh(server) as c:
        r = c.put(location, params={"digest": d}, headers={"Content-Length": "0"})
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d
    assert _get_blob(server, repo, d) == data


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "killed"])
def test_upload_survives_server_restart(two_workers: ServerProcess, stop_signal: int) -> None:
    server = two_workers
    repo = unique_repo("restart")
    chunks = [os.urandom(CHUNK) for _ in range(5)]
    data = b"".join(chunks)
    d = digest(data)

    location = _start(server, repo)
    location = _patch(server, location, chunks[0], 0)
    location = _patch(server, location, chunks[1], CHUNK)

    server.stop(stop_signal)
    server.start()  # same data directory, same port

    assert _offset(server, location) == 2 * CHUNK
    with _fresh(server) as c:  # a chunk that does not continue at the offset is still refused
        r = c.patch(location, content=chunks[3], headers={**OCTET, "Content-Range": f"{3 * CHUNK}-{4 * CHUNK - 1}"})
    assert r.status_code == 416, r.text
    location = _patch(server, location, chunks[2], 2 * CHUNK)
    location = _patch(server, location, chunks[3], 3 * CHUNK)
    with _fresh(server) as c:  # the last chunk rides on the closing PUT
        r = c.put(location, params={"digest": d}, content=chunks[4],
                  headers={**OCTET, "Content-Range": f"{4 * CHUNK}-{5 * CHUNK - 1}"})
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d
    assert _get_blob(server, repo, d) == data

    with _fresh(server) as c:  # the session is gone once the blob is committed
        assert c.get(location).status_code == 404


def test_concurrent_patches_on_two_workers_never_corrupt(two_workers: ServerProcess) -> None:
    """Two PATCHes racing for the same offset: one wins (202), the other gets 416, and the winner's
    bytes stay intact, so the upload completes with the winner's digest and content.

    Without a lock across worker processes the loser still overwrote the staged bytes: the PUT then
    either failed (DIGEST_INVALID) or committed a blob whose content does not match its digest."""
    server = two_workers
    size = 4 * 1024 * 1024
    for _ in range(6):
        repo = unique_repo("race")
        location = _start(server, repo)
        payloads = [random_bytes(size), random_bytes(size)]
        statuses: dict[int, int] = {}

        def send(i: int, location: str = location, payloads: list[bytes] = payloads,
                 statuses: dict[int, int] = statuses) -> None:
            with _fresh(server) as c:
                r = c.patch(location, content=payloads[i], headers={**OCTET, "Content-Range": f"0-{size - 1}"})
            statuses[i] = r.status_code

        threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(statuses.values()) == [202, 416], statuses
        winner = payloads[0] if statuses[0] == 202 else payloads[1]
        d = digest(winner)
        with _fresh(server) as c:
            r = c.put(location, params={"digest": d}, headers={"Content-Length": "0"})
        assert r.status_code == 201, r.text
        assert _get_blob(server, repo, d) == winner
