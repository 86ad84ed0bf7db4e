"""Worker processes for cargohold's own HTTP server (http/server.py).

The main process forks the workers (each imports the application itself, so the main process
stays small) and starts a new one when one dies. Each worker listens on a socket of its own bound
with SO_REUSEPORT, so the kernel spreads new connections evenly over the workers: with one shared
socket, whichever worker woke first took the connection, and one busy-looking worker could take
nearly all of them. SIGTERM or SIGINT stops the workers gracefully: they stop accepting, finish the
requests under way (10 s at most) and run the application's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
import time
from pathlib import Path

log = logging.getLogger("cargohold.server")


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(["http/1.1"])
    return context


def _worker(host: str, port: int, cert: Path | None, key: Path | None, idle_timeout: float) -> None:
    """A worker process: the application on its own uvloop event loop, on its own socket."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    from cargohold.app import worker_app
    from cargohold.http.server import serve_app

    async def main() -> None:
        app = worker_app()
        sock = _listen(host, port)  # after the app is ready: no connection waits for a starting worker
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        context = _tls_context(cert, key) if cert is not None and key is not None else None
        await serve_app(app, [sock], ssl=context, scheme="https" if context else "http", stop=stop,
                        idle_timeout=idle_timeout)

    try:
        import uvloop
    except ImportError:  # not on every platform: asyncio's own loop does the same, slower
        asyncio.run(main())
    else:
        uvloop.run(main())


def run(host: str, port: int, workers: int, cert: Path | None = None, key: Path | None = None,
        idle_timeout: float = 75.0) -> None:
    """Serve until SIGTERM/SIGINT; returns when every worker has stopped."""
    children: dict[int, int] = {}  # pid -> worker slot
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _worker(host, port, cert, key, idle_timeout)
            except BaseException:
                log.exception("worker %d failed", slot)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = slot

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(max(workers, 1)):
        spawn(slot)
    started: dict[int, float] = {}
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in children:
            continue
        slot = children.pop(pid)
        if stopping:
            continue
        log.warning("worker %d (pid %d) exited with status %d; starting another", slot, pid, status)
        # A worker that keeps dying at start would otherwise spin: wait a little between tries.
        if time.monotonic() - started.get(slot, 0.0) < 1.0:
            time.sleep(1.0)
        started[slot] = time.monotonic()
        spawn(slot)
