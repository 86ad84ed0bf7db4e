"""An HTTP/1.1 server for the ASGI app, built to receive large request bodies cheaply.

Why not a general-purpose server: a blob push is one long request body that must be hashed and
written. Under granian every piece of it was read by a Rust thread, then copied again into a new
bytes object for Python; that receive path cost more CPU than the hashing (docs/benchmarks.md,
session 4). Here the event loop's socket reads of a Content-Length body go straight into the
1 MiB pieces handed to the app (`asyncio.BufferedProtocol`): one copy, from the kernel.

Everything else is ordinary: httptools (llhttp, the parser of Node.js) parses request heads and
chunked bodies; responses are written as the app sends them, with flow control both ways.
Limits: request head 64 KiB, target 16 KiB; a connection idle for `idle_timeout` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import time
from collections import deque
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

import httptools
from starlette.types import ASGIApp, Message, Scope

log = logging.getLogger("cargohold.server")

PIECE = 1 << 20  # a Content-Length body reaches the app in pieces of this size
RAW_MIN = 64 << 10  # bodies at least this long are read into pieces; shorter ones via the parser
MAX_HEAD = 64 << 10
MAX_TARGET = 16 << 10
MAX_PIPELINED = 32  # requests parsed ahead of the one being answered, per connection
HIGH_WATER = 4 * PIECE  # body bytes queued for the app before reading from the socket pauses
LOW_WATER = PIECE
_HEAD_BUFFER = 256 << 10

_REASONS = {100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
            206: "Partial Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
            307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 411: "Length Required", 413: "Content Too Large", 414: "URI Too Long",
            415: "Unsupported Media Type", 416: "Range Not Satisfiable", 429: "Too Many Requests",
            431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class _Date:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self._second = 0
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode()
        return self._value


_DATE = _Date()


def _plain(status: int, message: str, *, close: bool, head: bool = False) -> bytes:
    """A whole plain-text response: the server's own answers (malformed requests, app failures)."""
    body = message.encode() + b"\n"
    return (b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"%sdate: %s\r\n\r\n%s") % (
        status, _REASONS.get(status, "Unknown").encode(), len(body), b"connection: close\r\n" if close else b"",
        _DATE.get(), b"" if head else body)


class _Plain(Exception):
    """A request the server answers itself (malformed, too large) before or instead of the app."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ServerState:
    """What all connections of one worker share."""

    def __init__(self, app: ASGIApp, *, scheme: str = "http", idle_timeout: float = 75.0) -> None:
        self.app = app
        self.scheme = scheme
        self.idle_timeout = idle_timeout
        self.connections: set[HttpConnection] = set()
        self.head_buffer = bytearray(_HEAD_BUFFER)  # reads are parsed at once, so one buffer serves all
        self.stopping = False


class _Cycle:
    """One request: its body as it arrives, and its response as the app sends it."""

    __slots__ = (
        "body",
        "broken",
        "chunked_response",
        "complete",
        "conn",
        "delivered",
        "discard",
        "disconnected",
        "expect_continue",
        "finished",
        "head",
        "keep_alive",
        "queued",
        "scope",
        "started",
        "waiter",
    )

    def __init__(self, conn: HttpConnection, scope: Scope, keep_alive: bool,
                 expect_continue: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.body: deque[bytes | bytearray] = deque()
        self.queued = 0
        self.complete = False  # the whole body has arrived
        self.waiter: asyncio.Future[None] | None = None
        self.started = False  # response head written
        self.finished = False  # response complete
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.head = scope["method"] == "HEAD"
        self.chunked_response = False
        self.disconnected = False
        self.discard = False  # answered already: the rest of the body is dropped
        self.broken = 0  # the body could not be parsed: the status to answer with
        self.delivered = False  # the app has had the end of the body

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def feed(self, data: bytes | bytearray) -> None:
        if self.discard:
            return
        self.body.append(data)
        self.queued += len(data)
        if self.queued >= HIGH_WATER:
            self.conn.pause_reading()
        self._wake()

    def end(self) -> None:
        self.complete = True
        self._wake()
        if self.discard:
            self.conn.close()

    def lost(self) -> None:
        self.disconnected = True
        self._wake()

    async def receive(self) -> Message:
        if self.delivered:
            # ASGI: after the body, receive() waits for the client to go away (Starlette listens
            # for that while streaming); a finished response counts as gone.
            while not self.disconnected and not self.finished:
                self.waiter = self.conn.loop.create_future()
                try:
                    await self.waiter
                finally:
                    self.waiter = None
            return {"type": "http.disconnect"}
        while not self.body and not self.complete and not self.disconnected:
            if self.expect_continue and not self.started:
                self.expect_continue = False
                self.conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.conn.resume_reading()
            self.waiter = self.conn.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.body:
            data = self.body.popleft()
            self.queued -= len(data)
            if self.queued < LOW_WATER:
                self.conn.resume_reading()
            more = bool(self.body) or not self.complete
            self.delivered = not more
            return {"type": "http.request", "body": data, "more_body": more}
        if self.complete and not self.disconnected:
            self.delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.disconnected and not self.broken:
            raise ClientDisconnected("the client went away")  # stops a download nobody reads
        if self.finished:
            return
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("response already started")
            self._start(message)
        elif kind == "http.response.body":
            if not self.started:
                raise RuntimeError("response body before its start")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            self._body(body, more)
            if more:
                await self.conn.drain()
        elif kind == "http.response.zerocopy":
            if not self.started or self.chunked_response or self.scope["scheme"] != "http":
                raise RuntimeError("zerocopy needs a started response with a Content-Length, over plain HTTP")
            file = message["file"]
            fd = file if isinstance(file, int) else file.fileno()
            count = message.get("count")
            if count is None:
                count = os.fstat(fd).st_size - message.get("offset", 0)
            if not self.head and count:
                await self.conn.send_file(fd, message.get("offset", 0), count)
            if not message.get("more_body", False):
                self.finished = True
                self._wake()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    def _start(self, message: Message) -> None:
        status = int(message["status"])
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "Unknown").encode())]
        has_length = False
        for name, value in message.get("headers", ()):
            lowered = bytes(name).lower()
            if lowered == b"connection":
                if bytes(value).lower() == b"close":
                    self.keep_alive = False
                continue
            if lowered == b"transfer-encoding":
                continue  # framing is this server's business
            has_length = has_length or lowered == b"content-length"
            line = b"%s: %s\r\n" % (bytes(name), bytes(value))
            if line.count(b"\n") != 1 or line.count(b"\r") != 1:
                raise ValueError(f"response header {bytes(name)[:40]!r} holds a line break")
            lines.append(line)
        if not has_length and status >= 200 and status not in (204, 304) and not self.head:
            self.chunked_response = True
            lines.append(b"transfer-encoding: chunked\r\n")
        if not self.complete:
            self.keep_alive = False  # answered before the body arrived: the connection closes after it
        if self.conn.state.stopping:
            self.keep_alive = False
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"date: %s\r\n\r\n" % _DATE.get())
        self.started = True
        self.conn.write(b"".join(lines))

    def _body(self, body: bytes, more: bool) -> None:
        if self.head:
            pass  # HEAD: the head promised a length, no bytes follow
        elif self.chunked_response:
            if body:
                self.conn.write(b"%x\r\n" % len(body))
                self.conn.write(body)
                self.conn.write(b"\r\n")
            if not more:
                self.conn.write(b"0\r\n\r\n")
        elif body:
            self.conn.write(body)
        if not more:
            self.finished = True
            self._wake()


class ClientDisconnected(OSError):
    """Raised by send() once the client is gone."""


class HttpConnection(asyncio.BufferedProtocol):
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        # the request being parsed (its head, then its body), and those waiting for the app
        self._url = bytearray()
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._parsing: _Cycle | None = None
        self._pending: deque[_Cycle] = deque()
        self._running: _Cycle | None = None
        self._task: asyncio.Task[None] | None = None
        # a Content-Length body read straight into pieces
        self._raw_left = 0
        self._piece: bytearray | None = None
        self._fill = 0
        self._paused = False
        self._wait_running = False  # a complete request is being answered; pipelined ones wait
        self._closing = False
        self._writable: asyncio.Future[None] | None = None
        self._last = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._sending_file = False  # a sendfile thread owns the socket's writing side
        self._head_started = 0.0  # when the request head being read began (0: none under way)

    # -- transport events ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not a subclass
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.server = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else None
        self.state.connections.add(self)
        self._timer = self.loop.call_later(self.state.idle_timeout, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        for cycle in (self._running, *self._pending, self._parsing):
            if cycle is not None:
                cycle.lost()
        self._pending.clear()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        self._last = time.monotonic()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    async def drain(self) -> None:
        if self._writable is not None and not self._writable.done():
            await self._writable

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        """Send `count` bytes of file `fd` from `offset` with sendfile(2): the kernel moves them
        from the page cache to the socket, no copy in this process. Runs on a worker thread (the
        event loop gives no writability signal for a socket its transport owns); what the
        transport still buffers (the response head) goes out first."""
        if self.transport is None or self._closing:
            raise ClientDisconnected("the client went away")
        self.transport.set_write_buffer_limits(high=0)  # pause_writing until the buffer is empty
        try:
            await self.drain()
        finally:
            self.transport.set_write_buffer_limits()
        sock = self.transport.get_extra_info("socket")
        if sock is None or self._closing:
            raise ClientDisconnected("the client went away")
        self._last = time.monotonic()
        self._sending_file = True
        try:
            await asyncio.to_thread(_sendfile, sock.fileno(), fd, offset, count, self.state.idle_timeout, self)
        except OSError as err:
            self.close()
            raise ClientDisconnected(f"the client went away: {err}") from err
        finally:
            self._sending_file = False

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._raw_left:
            if self._piece is None:
                self._piece = bytearray(min(PIECE, self._raw_left))
                self._fill = 0
            return memoryview(self._piece)[self._fill:]
        return memoryview(self.state.head_buffer)

    def buffer_updated(self, nbytes: int) -> None:
        self._last = time.monotonic()
        if self._raw_left:
            self._fill += nbytes
            self._raw_left -= nbytes
            assert self._piece is not None and self._parsing is not None
            if self._fill == len(self._piece):
                cycle, piece = self._parsing, self._piece
                self._piece = None
                cycle.feed(piece)
                if not self._raw_left:
                    self.parser = httptools.HttpRequestParser(self)  # the old one still expects the body
                    self._body_complete(cycle)
            return
        try:
            self.parser.feed_data(memoryview(self.state.head_buffer)[:nbytes])
        except httptools.HttpParserUpgrade as upgrade:
            # An Upgrade header (h2c, websocket): answered as plain HTTP/1.1, which RFC 9110
            # allows; the parser stops there, so a fresh one takes whatever follows.
            self.parser = httptools.HttpRequestParser(self)
            rest = nbytes - int(upgrade.args[0]) if upgrade.args else 0
            if rest > 0 and not self._closing:
                self.buffer_updated_from(bytes(memoryview(self.state.head_buffer)[nbytes - rest:nbytes]))
        except httptools.HttpParserInvalidMethodError:
            self._refuse(501, "unknown request method")
        except httptools.HttpParserError as err:
            cause = err.__cause__ or err.__context__
            if isinstance(cause, _Plain):
                self._refuse(cause.status, str(cause))
            else:
                self._refuse(400, f"malformed request: {err}")

    def buffer_updated_from(self, data: bytes) -> None:
        """Parse bytes that are not in the shared read buffer (the rest after an upgrade)."""
        size = len(data)
        self.state.head_buffer[:size] = data
        self.buffer_updated(size)

    def eof_received(self) -> bool | None:
        """The client has sent all it will: a request whose body is complete still gets its
        answer (then the connection closes); one cut short is a disconnect."""
        parsing = self._parsing
        if parsing is not None or self._running is None:
            return None  # close: nothing more can be answered
        self._running.keep_alive = False
        self._pending.clear()
        return True

    # -- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._head_started = time.monotonic()
        self._url = bytearray()
        self._headers = []
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_TARGET:
            raise _Plain(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD:
            raise _Plain(431, "request head too large")
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if len(self._pending) >= MAX_PIPELINED:
            raise _Plain(429, "too many pipelined requests")
        parsed = httptools.parse_url(bytes(self._url))
        raw_path = parsed.path or b"/"
        if not raw_path.startswith(b"/"):
            raise _Plain(400, "request target must be a path")
        method = self.parser.get_method().decode("ascii")
        expect = False
        length = -1
        chunked = False
        for name, value in self._headers:
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"expect" and value.lower() == b"100-continue":
                expect = True
        scope: Scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.parser.get_http_version(), "method": method,
            "scheme": self.state.scheme, "path": unquote(raw_path.decode("latin-1"), "utf-8", "surrogateescape")
            if b"%" in raw_path else raw_path.decode("latin-1"),
            "raw_path": raw_path, "query_string": parsed.query or b"", "root_path": "",
            "headers": self._headers, "client": self.client, "server": self.server,
        }
        if self.state.scheme == "http":  # sendfile(2) cannot go through TLS
            scope["extensions"] = {"http.response.zerocopy": {}}
        self._head_started = 0.0
        cycle = _Cycle(self, scope, self.parser.should_keep_alive(), expect)
        self._parsing = cycle
        if not chunked and length >= RAW_MIN:
            # Read the body ourselves from the next socket read on; whatever part of it came with
            # the head arrives through on_body first.
            self._raw_left = length
        self._pending.append(cycle)
        if self._running is None:
            self._run_next()

    def on_body(self, body: bytes) -> None:
        if self._parsing is not None:
            if self._raw_left:
                self._raw_left -= len(body)
            self._parsing.feed(body)

    def on_message_complete(self) -> None:
        self._raw_left = 0
        if self._parsing is not None:
            self._body_complete(self._parsing)

    def _body_complete(self, cycle: _Cycle) -> None:
        self._parsing = None
        cycle.end()
        if self._running is not None:
            # One request at a time: the next pipelined one waits in the socket until this is answered.
            self._wait_running = True
            self.pause_reading()

    # -- running requests ---------------------------------------------------------------------

    def _run_next(self) -> None:
        if self._closing or not self._pending:
            return
        cycle = self._pending.popleft()
        self._running = cycle
        self._task = self.loop.create_task(self._run(cycle))  # held: the loop keeps only a weak reference

    async def _run(self, cycle: _Cycle) -> None:
        try:
            await self.state.app(cycle.scope, cycle.receive, cycle.send)
        except ClientDisconnected:
            pass
        except Exception:
            if cycle.disconnected:
                log.debug("error after the client went away", exc_info=True)
            else:
                log.exception("unhandled error in %s %s", cycle.scope["method"], cycle.scope["path"])
            if not cycle.started and not cycle.disconnected:
                self._plain_response(cycle, 500, "internal server error")
            else:
                cycle.keep_alive = False
        if cycle.broken and not cycle.started:
            self._plain_response(cycle, cycle.broken, "malformed request body")
        if not cycle.finished and not cycle.disconnected:
            if not cycle.started:
                self._plain_response(cycle, 500, "the application sent no response")
            else:
                cycle.keep_alive = False  # a response cut short: only closing tells the client
        self._running = None
        self._task = None
        if self._closing:
            return
        if cycle.broken:
            self.close()
            return
        if not cycle.complete:
            # Answered before its body arrived: closing now would reset the connection under the
            # client's feet and lose the answer, so the rest is read and dropped (for a while).
            cycle.discard = True
            cycle.body.clear()
            self.loop.call_later(5.0, self.close)
            self.resume_reading()
            return
        if not cycle.keep_alive or self.state.stopping:
            self.close()
            return
        self._wait_running = False
        self.resume_reading()
        self._run_next()

    def _plain_response(self, cycle: _Cycle, status: int, message: str) -> None:
        """The server's own answer in place of the app's."""
        cycle.keep_alive = cycle.keep_alive and cycle.complete and not self.state.stopping
        cycle.started = cycle.finished = True
        self.write(_plain(status, message, close=not cycle.keep_alive, head=cycle.head))

    def _refuse(self, status: int, message: str) -> None:
        """A request the parser cannot take: answer it and close. When its app is already running
        (a malformed chunked body), the app sees the body end as a disconnect and the answer is
        sent once it returns, unless it answered itself."""
        self._raw_left = 0
        parsing, self._parsing = self._parsing, None
        if parsing is not None and parsing is self._running:
            parsing.broken = status
            parsing.keep_alive = False
            parsing.lost()
            return
        if self._running is None:
            self.write(_plain(status, message, close=True))
            self.close()
        else:  # a pipelined request behind the running one: that one is answered, then the connection closes
            self._running.keep_alive = False
            self._pending.clear()
            self.pause_reading()

    # -- helpers ------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.transport is not None and not self._closing:
            self.transport.write(data)

    def pause_reading(self) -> None:
        if not self._paused and self.transport is not None and not self._closing:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and not self._wait_running and self.transport is not None and not self._closing:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self._closing:
            self._closing = True
            self.transport.close()

    def _check_idle(self) -> None:
        if self._closing:
            return
        now = time.monotonic()
        idle = now - self._last
        if self._head_started and now - self._head_started >= self.state.idle_timeout:
            self.close()  # a head trickling in a byte at a time (slowloris) is not idle, but is given up on
            return
        if self._sending_file:  # the sending thread enforces the timeout itself
            self._timer = self.loop.call_later(self.state.idle_timeout, self._check_idle)
            return
        stalled_reader = self._writable is not None and not self._writable.done()
        waiting_on_client = self._running is None or stalled_reader or (
            not self._running.complete and not self._paused)
        if idle >= self.state.idle_timeout and waiting_on_client:
            if self._running is not None:
                self._running.lost()
            if stalled_reader and self.transport is not None:
                self._closing = True
                self.transport.abort()  # close() would wait for the unread data to drain
            else:
                self.close()
            return
        self._timer = self.loop.call_later(max(1.0, self.state.idle_timeout - idle), self._check_idle)


def _sendfile(sock_fd: int, fd: int, offset: int, count: int, timeout: float, conn: HttpConnection) -> None:
    """Blocking sendfile loop for a non-blocking socket: wait for room, send, until done; a
    client that takes no bytes for `timeout` seconds is given up on."""
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT)
    end = offset + count
    while offset < end:
        if conn._closing:
            raise ConnectionAbortedError("connection closed")
        try:
            sent = os.sendfile(sock_fd, fd, offset, min(end - offset, 1 << 30))
        except BlockingIOError:
            if not poller.poll(timeout * 1000):
                raise TimeoutError("the client stopped reading") from None
            continue
        if sent == 0:
            raise EOFError("the file ended before the promised length")
        offset += sent
        conn._last = time.monotonic()


async def serve_app(app: ASGIApp, sockets: list[Any], *, ssl: Any = None, scheme: str = "http",
                    stop: asyncio.Event | None = None, idle_timeout: float = 75.0,
                    shutdown_grace: float = 10.0) -> None:
    """Run the app's lifespan, serve the sockets until `stop` is set, then drain and shut down."""
    loop = asyncio.get_running_loop()
    state = ServerState(app, scheme=scheme, idle_timeout=idle_timeout)
    lifespan = _Lifespan(app)
    await lifespan.startup()
    servers = [await loop.create_server(lambda: HttpConnection(state), sock=sock, ssl=ssl, backlog=1024)
               for sock in sockets]
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        state.stopping = True
        for server in servers:
            server.close()
        deadline = loop.time() + shutdown_grace
        for conn in list(state.connections):
            if conn._running is None:
                conn.close()
        while any(c._running is not None for c in state.connections) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(state.connections):
            conn.close()
        await lifespan.shutdown()


class _Lifespan:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        async def run() -> None:
            await self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, self._inbox.get, self._outbox.put)

        self._task = asyncio.get_running_loop().create_task(run())
        await self._inbox.put({"type": "lifespan.startup"})
        reply = await self._outbox.get()
        if reply["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"application startup failed: {reply.get('message', reply['type'])}")

    async def shutdown(self) -> None:
        if self._task is None:
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._outbox.get(), 30)
