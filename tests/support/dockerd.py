"""An isolated, throw-away Docker daemon for client tests.

The daemon gets its own data root, exec root, pid file, socket and (empty) daemon.json, uses the
vfs storage driver (works on any filesystem, no kernel module) and touches no host networking
(no bridge, no iptables, no ip forwarding). It starts and manages its own containerd under the
exec root. The docker CLI is pointed at it through DOCKER_HOST and a temporary DOCKER_CONFIG, so
neither the host's daemon nor the user's ~/.docker is involved.

Paths live in a short directory under /tmp: a unix socket path must fit in 108 bytes, and
containerd's socket sits a few levels below the exec root.

    with DockerDaemon() as daemon:
        daemon.docker("info")
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


class DockerDaemonError(RuntimeError):
    pass


def docker_available() -> str | None:
    """Why the daemon cannot run here, or None when it can."""
    for tool in ("dockerd", "docker"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if os.geteuid() != 0:
        return "dockerd needs root"
    return None


class DockerCli:
    """The docker CLI pointed at one daemon through DOCKER_HOST, with a private DOCKER_CONFIG."""

    def __init__(self, host: str, config_dir: Path) -> None:
        self.config_dir = config_dir
        config_dir.mkdir(parents=True, exist_ok=True)
        config = config_dir / "config.json"
        if not config.exists():
            config.write_text('{"auths": {}}\n')
        self.env = dict(os.environ)
        for key in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            self.env.pop(key, None)
        self.env.update({
            "DOCKER_HOST": host,
            "DOCKER_CONFIG": str(config_dir),
            # The classic builder: no buildx plugin needed, and FROM scratch + COPY runs nothing.
            "DOCKER_BUILDKIT": "0",
            "DOCKER_CLI_HINTS": "false",
        })

    def __call__(self, *args: str, check: bool = True, input: str | None = None,
                 timeout: float = 180.0, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run `docker ARGS`; output is text, stdout and stderr kept apart."""
        proc = subprocess.run(["docker", *args], env=self.env, input=input, capture_output=True,
                              text=True, timeout=timeout, cwd=cwd,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise DockerDaemonError(f"docker {' '.join(args)} failed ({proc.returncode}):\n"
                                    f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc


class DockerDaemon:
    def __init__(self, base: Path | None = None) -> None:
        self.base = base or Path(tempfile.mkdtemp(prefix="chd-", dir="/tmp"))
        self.sock = self.base / "d.sock"
        self.data_root = self.base / "data"
        self.exec_root = self.base / "x"
        self.pidfile = self.base / "d.pid"
        self.config_dir = self.base / "cli"  # DOCKER_CONFIG for the CLI
        self.daemon_json = self.base / "daemon.json"
        self.log_path = self.base / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- the CLI ------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def cli(self, config_dir: Path | None = None) -> DockerCli:
        """A docker CLI bound to this daemon, with its own DOCKER_CONFIG (logins) directory."""
        return DockerCli(self.host, config_dir or self.config_dir)

    def docker(self, *args: str, check: bool = True, timeout: float = 180.0
               ) -> subprocess.CompletedProcess[str]:
        return self.cli()(*args, check=check, timeout=timeout)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> DockerDaemon:
        for d in (self.data_root, self.exec_root, self.config_dir):
            d.mkdir(parents=True, exist_ok=True)
        # Our own daemon.json, so the host's /etc/docker/daemon.json is ignored. Before 23.0 it also
        # has to move the libtrust key that dockerd would otherwise create as /etc/docker/key.json.
        settings = {"deprecated-key-path": str(self.base / "key.json")} if _dockerd_major() < 23 else {}
        self.daemon_json.write_text(json.dumps(settings) + "\n")
        cmd = ["dockerd", "--config-file", str(self.daemon_json),
               "--storage-driver=vfs", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
               "--bridge=none", "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
               "--pidfile", str(self.pidfile), "-H", self.host]
        env = dict(os.environ)
        env.pop("DOCKER_HOST", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log_text = self.log_tail()
                code = self.proc.returncode
                self.stop()
                raise DockerDaemonError(f"dockerd exited early ({code}):\n{log_text}")
            if self.sock.exists():
                try:
                    probe = self.docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=10)
                except subprocess.TimeoutExpired:
                    probe = None
                if probe is not None and probe.returncode == 0 and probe.stdout.strip():
                    return self
            time.sleep(0.25)
        log_text = self.log_tail()
        self.stop()
        raise DockerDaemonError(f"dockerd did not come up within {timeout:.0f}s:\n{log_text}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _containerd_pid(self) -> int | None:
        try:
            return int((self.exec_root / "containerd" / "containerd.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """SIGTERM (dockerd then stops its containerd), SIGKILL after a grace period; remove all files."""
        containerd = self._containerd_pid()
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)
        # The managed containerd has a session of its own: a dockerd that had to be killed (or that
        # died) leaves it running, so it is killed by the pid it recorded, if that is still ours.
        if containerd is not None:
            _end_containerd(containerd, self.exec_root)
        self.proc = None
        self._cleanup()

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def _cleanup(self) -> None:
        # Nothing should stay mounted (vfs, no containers run), but never recurse into a mount.
        for mount in mounts_under(self.base):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> DockerDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _dockerd_major() -> int:
    try:
        out = subprocess.run(["dockerd", "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    m = re.search(r"version (\d+)\.", out)
    return int(m[1]) if m else 0


def _end_containerd(pid: int, exec_root: Path) -> None:
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if not _is_our_containerd(pid, exec_root):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _is_our_containerd(pid, exec_root):
            time.sleep(0.1)


def _is_our_containerd(pid: int, exec_root: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (bool(cmdline) and Path(cmdline[0].decode(errors="replace")).name == "containerd"
            and any(str(exec_root).encode() in arg for arg in cmdline))


def mounts_under(base: Path) -> list[str]:
    prefix = str(base.resolve()) + "/"
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[1] for line in lines if len(line.split()) > 1]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)
