"""cargohold's own HTTP/1.1 server (http/server.py), driven over real sockets.

The server runs in a thread on its own uvloop event loop with small ASGI apps written here, so
each test looks at the protocol alone: framing, pipelining, limits, hostile input, bodies read
into pieces, disconnects and timeouts. Tests against the whole registry run in tests/api and
tests/clients, on the same server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop

from cargohold.http import server as http_server
from cargohold.http.server import serve_app


@dataclass
class Seen:
    """What the app saw of each request."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    pieces: list[list[int]] = field(default_factory=list)
    disconnects: int = 0
    sent_pieces: int = 0
    send_errors: int = 0
    early_receive: list[str] = field(default_factory=list)
    file_path: str = ""


async def echo_app(scope: dict[str, Any], receive: Any, send: Any, seen: Seen) -> None:
    """Reads the whole body, answers with its length and SHA-256 (or something else by path)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    path = scope["path"]
    seen.requests.append(scope)
    if path == "/early":  # answers without reading the body
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-length", b"6")]})
        await send({"type": "http.response.body", "body": b"denied"})
        return
    if path == "/boom":
        raise RuntimeError("the app failed")
    if path == "/silent":
        return
    if path == "/inject":  # a header value with a line break must never reach the wire
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"location", b"/x\r\nSet-Cookie: evil=1"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    if path.startswith("/file"):  # a file sent by the server with sendfile(2)
        assert "http.response.zerocopy" in scope["extensions"]
        with open(seen.file_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            offset = 1000 if path == "/file-range" else 0
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(size - offset).encode())]})
            try:
                await send({"type": "http.response.zerocopy", "file": f.fileno(), "offset": offset,
                            "count": size - offset, "more_body": False})
            except OSError:
                seen.send_errors += 1
                raise
        return
    if path == "/download":  # 64 MiB in 1 MiB pieces, counting what send() accepted
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(64 << 20).encode())]})
        piece = b"d" * (1 << 20)
        try:
            for _ in range(64):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                seen.sent_pieces += 1
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            seen.send_errors += 1
            raise
        return
    if path == "/slow":
        await asyncio.sleep(0.5)
    hasher = hashlib.sha256()
    sizes: list[int] = []
    total = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            seen.disconnects += 1
            return
        chunk = message["body"]
        if chunk:
            sizes.append(len(chunk))
            hasher.update(chunk)
            if len(total) < 1 << 20:
                total += chunk
        if not message["more_body"]:
            break
    seen.bodies.append(bytes(total))
    seen.pieces.append(sizes)
    if path == "/wait-end":  # after the body, receive() waits (for a disconnect), it does not spin
        try:
            message = await asyncio.wait_for(receive(), 0.2)
            seen.early_receive.append(message["type"])
        except TimeoutError:
            seen.early_receive.append("waited")
    if path == "/stream":  # a response without a length: chunked transfer coding
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    body = f"{sum(sizes)} {hasher.hexdigest()}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), (b"x-path", path.encode())]})
    await send({"type": "http.response.body", "body": body})


class Running:
    def __init__(self, idle_timeout: float = 30.0) -> None:
        self.seen = Seen()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.idle_timeout = idle_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()

            async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
                await echo_app(scope, receive, send, self.seen)

            await serve_app(app, [self.sock], stop=self._stop, idle_timeout=self.idle_timeout,
                            shutdown_grace=2.0)

        uvloop.run(main())

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def connect(self) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return conn


@pytest.fixture
def srv() -> Iterator[Running]:
    running = Running()
    yield running
    running.stop()


def read_response(conn: socket.socket, buffered: bytearray | None = None,
                  head: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One response off the connection (Content-Length or chunked); leftovers stay in `buffered`."""
    buf = buffered if buffered is not None else bytearray()

    def fill() -> None:
        data = conn.recv(1 << 16)
        if not data:
            raise EOFError("connection closed")
        buf.extend(data)

    while b"\r\n\r\n" not in buf:
        fill()
    top, _, rest = bytes(buf).partition(b"\r\n\r\n")
    buf[:] = rest
    lines = top.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if status == 100 or head:
        return status, headers, b""
    if "content-length" in headers:
        size = int(headers["content-length"])
        while len(buf) < size:
            fill()
        body = bytes(buf[:size])
        buf[:] = buf[size:]
        return status, headers, body
    if headers.get("transfer-encoding") == "chunked":
        body = bytearray()
        while True:
            while b"\r\n" not in buf:
                fill()
            line, _, rest = bytes(buf).partition(b"\r\n")
            size = int(line, 16)
            buf[:] = rest
            while len(buf) < size + 2:
                fill()
            body += buf[:size]
            buf[:] = buf[size + 2:]
            if size == 0:
                return status, headers, bytes(body)
    return status, headers, b""


def closed(conn: socket.socket, timeout: float = 5.0) -> bool:
    """True when the server closes the connection (EOF) within `timeout`, reading what is left."""
    conn.settimeout(timeout)
    try:
        while conn.recv(1 << 16):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def answered_then_closed(srv: Running, request_bytes: bytes) -> int:
    """Send one request; returns the answer's status after checking the server then closed."""
    conn = srv.connect()
    conn.sendall(request_bytes)
    status = read_response(conn)[0]
    assert closed(conn)
    return status


def leave_mid_download(srv: Running, target: bytes, timeout: float = 10) -> None:
    """Ask for a large body, take a little of it and hang up; waits for the app's send() to fail."""
    conn = srv.connect()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
    conn.recv(1 << 16)
    conn.close()
    deadline = time.monotonic() + timeout
    while srv.seen.send_errors == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.seen.send_errors == 1


def digest_line(data: bytes) -> bytes:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode()


def test_keep_alive_and_pipelined_requests_are_answered_in_order(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"".join(b"POST /p%d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab%d" % (i, i)
                          for i in range(5)))
    buf = bytearray()
    for i in range(5):
        status, headers, body = read_response(conn, buf)
        assert (status, headers["x-path"], body) == (200, f"/p{i}", digest_line(b"ab%d" % i))
    conn.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection goes on
    assert read_response(conn, buf)[1]["x-path"] == "/again"


def test_a_large_body_arrives_in_pieces_and_a_pipelined_request_after_it_is_answered(srv: Running) -> None:
    data = bytes(range(256)) * 12_000  # ~3 MiB: read past the head into pieces
    conn = srv.connect()
    conn.sendall(b"PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(data) + data
                 + b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = bytearray()
    assert read_response(conn, buf)[2] == digest_line(data)
    assert read_response(conn, buf)[1]["x-path"] == "/after"
    pieces = srv.seen.pieces[0]
    assert sum(pieces) == len(data)
    assert max(pieces) == http_server.PIECE  # whole pieces, not one bytes object per socket read


def test_a_body_sent_slowly_in_odd_sizes_is_reassembled_exactly(srv: Running) -> None:
    data = bytes(range(251)) * 1000
    conn = srv.connect()
    conn.sendall(b"PUT /slowly HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(data) + data[:10])
    at = 10
    for size in (1, 7, 65_537, 3, 100_000):
        conn.sendall(data[at:at + size])
        at += size
        time.sleep(0.01)
    conn.sendall(data[at:])
    assert read_response(conn)[2] == digest_line(data)


def test_a_chunked_request_body(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"PATCH /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")
    assert read_response(conn)[2] == digest_line(b"hello world")


def test_a_response_without_a_length_is_sent_chunked(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    _status, headers, body = read_response(conn)
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"one,two,three"


def test_head_gets_no_body(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = bytearray()
    _status, headers, _ = read_response(conn, buf, head=True)
    assert int(headers["content-length"]) > 0
    # The length promised for HEAD is not followed by bytes: the next response starts right away.
    assert buf.startswith(b"HTTP/1.1 200") or not buf
    assert read_response(conn, buf)[1]["x-path"] == "/g"


def test_http_1_0_closes_after_the_response(srv: Running) -> None:
    assert answered_then_closed(srv, b"GET /old HTTP/1.0\r\n\r\n") == 200


def test_connection_close_is_honoured(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    _status, headers, _ = read_response(conn)
    assert headers["connection"] == "close"
    assert closed(conn)


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
    # request smuggling: both framings, or two lengths that disagree
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_malformed_requests_get_400_and_the_connection_closes(srv: Running, request_bytes: bytes) -> None:
    assert answered_then_closed(srv, request_bytes) == 400
    assert srv.seen.requests == [] or all(r["path"].startswith("/") for r in srv.seen.requests)


def test_an_unknown_method_gets_501(srv: Running) -> None:
    assert answered_then_closed(srv, b"GARBAGE / HTTP/1.1\r\nHost: x\r\n\r\n") == 501


def test_the_absolute_form_of_a_target_is_taken_for_its_path(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"GET http://other.example/v2/?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(conn)[0] == 200
    assert (srv.seen.requests[-1]["path"], srv.seen.requests[-1]["query_string"]) == ("/v2/", b"x=1")


def test_an_oversized_head_gets_431(srv: Running) -> None:
    big = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: %s\r\n" % (b"a" * 70_000) + b"\r\n"
    assert answered_then_closed(srv, big) == 431
    assert srv.seen.requests == []


def test_many_small_headers_count_towards_the_limit(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(20_000)) + b"\r\n")
    assert read_response(conn)[0] == 431


def test_an_overlong_target_gets_414(srv: Running) -> None:
    assert answered_then_closed(srv, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n") == 414


def test_the_path_is_decoded_and_the_raw_path_kept(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"GET /v2/a%2Fb/x?n=1&last=%2e HTTP/1.1\r\nHost: x\r\n\r\n")
    read_response(conn)
    scope = srv.seen.requests[-1]
    assert scope["path"] == "/v2/a/b/x"
    assert scope["raw_path"] == b"/v2/a%2Fb/x"
    assert scope["query_string"] == b"n=1&last=%2e"
    assert scope["client"][0] == "127.0.0.1"
    assert (b"host", b"x") in scope["headers"]


def test_expect_100_continue_is_answered_when_the_app_reads_the_body(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"PUT /wants HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    buf = bytearray()
    assert read_response(conn, buf)[0] == 100
    conn.sendall(b"hello")
    assert read_response(conn, buf)[2] == digest_line(b"hello")


def test_an_answer_before_the_body_is_delivered_whole_then_the_connection_closes(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"PUT /early HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4000000\r\n\r\n")
    buf = bytearray()
    status, headers, body = read_response(conn, buf)
    assert (status, body, headers["connection"]) == (401, b"denied", "close")  # no 100 Continue first
    conn.sendall(b"x" * 4_000_000)  # the client sends its body anyway: read and dropped, no reset
    assert closed(conn)


def test_a_client_that_hangs_up_mid_body_is_seen_as_a_disconnect(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"PUT /gone HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n" + b"y" * 2_000_000)
    time.sleep(0.2)
    conn.close()
    deadline = time.monotonic() + 5
    while srv.seen.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.seen.disconnects == 1
    # and the server goes on serving others
    other = srv.connect()
    other.sendall(b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(other)[0] == 200


def test_an_app_error_is_a_500_and_the_connection_stays_usable(srv: Running) -> None:
    conn = srv.connect()
    buf = bytearray()
    conn.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(conn, buf)[0] == 500
    conn.sendall(b"GET /silent HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(conn, buf)[0] == 500
    conn.sendall(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(conn, buf)[0] == 200


def test_an_idle_connection_is_closed() -> None:
    running = Running(idle_timeout=0.5)
    try:
        conn = running.connect()
        conn.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(conn)[0] == 200
        assert closed(conn, timeout=5)
        half = running.connect()
        half.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n")  # a head that never ends (slowloris)
        assert closed(half, timeout=5)
    finally:
        running.stop()


def test_stopping_finishes_the_request_under_way() -> None:
    running = Running()
    conn = running.connect()
    conn.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)
    running.stop()
    status, headers, _ = read_response(conn)
    assert status == 200 and headers["connection"] == "close"


def test_receive_after_the_body_waits_instead_of_returning_at_once(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"POST /wait-end HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
    assert read_response(conn)[0] == 200
    assert srv.seen.early_receive == ["waited"]


def test_a_client_that_stops_reading_a_download_stops_the_sending(srv: Running) -> None:
    leave_mid_download(srv, b"/download")
    assert srv.seen.sent_pieces < 64


def test_a_client_that_half_closes_still_gets_its_answer(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"POST /half HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    conn.shutdown(socket.SHUT_WR)
    assert read_response(conn)[2] == digest_line(b"abc")
    assert closed(conn)


def test_an_upgrade_request_is_answered_as_http_1_1(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                 b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = bytearray()
    status, headers, _ = read_response(conn, buf)
    assert (status, headers["x-path"]) == (200, "/up")
    assert read_response(conn, buf)[1]["x-path"] == "/next"


def test_a_client_that_never_reads_its_download_is_dropped() -> None:
    running = Running(idle_timeout=0.5)
    try:
        conn = running.connect()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.sendall(b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 10
        while running.seen.send_errors == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running.seen.send_errors == 1
        assert running.seen.sent_pieces < 64
    finally:
        running.stop()


def test_a_file_is_sent_with_sendfile_in_full_or_from_an_offset(srv: Running, tmp_path: Any) -> None:
    data = os.urandom(9 << 20)
    path = tmp_path / "blob"
    path.write_bytes(data)
    srv.seen.file_path = str(path)
    conn = srv.connect()
    buf = bytearray()
    conn.sendall(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\nGET /file-range HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"HEAD /file HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(conn, buf)[2] == data
    assert read_response(conn, buf)[2] == data[1000:]
    assert read_response(conn, buf, head=True)[1]["content-length"] == str(len(data))
    assert read_response(conn, buf)[1]["x-path"] == "/after"  # HEAD sent no body: the framing holds


def test_a_client_that_leaves_during_sendfile_is_a_send_error(srv: Running, tmp_path: Any) -> None:
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(64 << 20))
    srv.seen.file_path = str(path)
    leave_mid_download(srv, b"/file")
    other = srv.connect()  # the worker thread let go: the server goes on
    other.sendall(b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(other)[0] == 200


def test_a_response_header_with_a_line_break_becomes_a_500(srv: Running) -> None:
    conn = srv.connect()
    conn.sendall(b"GET /inject HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, _ = read_response(conn)
    assert status == 500
    assert "set-cookie" not in headers


def test_too_many_pipelined_requests_are_refused() -> None:
    running = Running()
    try:
        conn = running.connect()
        conn.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n" * 100)
        buf = bytearray()
        statuses = []
        with contextlib.suppress(EOFError):
            while True:
                statuses.append(read_response(conn, buf)[0])
        assert statuses[0] == 200 and len(statuses) <= 1 + http_server.MAX_PIPELINED
        assert len(running.seen.requests) <= 1 + http_server.MAX_PIPELINED
    finally:
        running.stop()


def test_a_head_that_trickles_in_is_given_up_on() -> None:
    running = Running(idle_timeout=0.6)
    try:
        conn = running.connect()
        conn.sendall(b"GET / HTTP/1.1\r\n")
        deadline = time.monotonic() + 5
        gone = False
        while time.monotonic() < deadline and not gone:
            try:
                conn.sendall(b"X-A: b\r\n")  # never idle, never finished
            except OSError:
                gone = True
                break
            time.sleep(0.1)
        assert gone or closed(conn, timeout=1)
        assert running.seen.requests == []
    finally:
        running.stop()
