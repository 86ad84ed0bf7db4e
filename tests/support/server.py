"""Start and stop a real `cargohold serve` process for tests and benchmarks."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT_KEY_ID = "AKIACARGOHOLDTEST001"
ROOT_SECRET = "cargohold-test-secret-0123456789abcdefghij"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    workers: int = 1
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    key_id: str = ROOT_KEY_ID
    secret: str = ROOT_SECRET
    scheme: str = "http"
    wrapper: list[str] = field(default_factory=list)  # runs the server under it, e.g. ip netns exec NS
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.key_id, self.secret)

    @property
    def basic_header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.key_id}:{self.secret}".encode()).decode()

    def start(self, timeout: float = 30.0) -> ServerProcess:
        if not self.port:
            self.port = free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update({"CARGOHOLD_ROOT_ACCESS_KEY_ID": self.key_id,
                    "CARGOHOLD_ROOT_SECRET_ACCESS_KEY": self.secret,
                    "CARGOHOLD_LOG_LEVEL": "warning"})
        env.update(self.env)
        self.log_path = self.data_dir / "server.log"
        cmd = [*self.wrapper, sys.executable, "-m", "cargohold", "serve", "--host", self.host,
               "--port", str(self.port), "--data-dir", str(self.data_dir), "--workers", str(self.workers),
               *self.extra_args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                r = httpx.get(f"{self.url}/healthz", timeout=1, verify=False)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.proc = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def temp_server(**kwargs: object) -> ServerProcess:
    base = Path(tempfile.mkdtemp(prefix="cargohold-test-"))
    return ServerProcess(data_dir=base / "data", **kwargs)  # type: ignore[arg-type]


def cleanup(server: ServerProcess) -> None:
    server.stop()
    shutil.rmtree(server.data_dir.parent, ignore_errors=True)
