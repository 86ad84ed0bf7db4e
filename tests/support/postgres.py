"""A throwaway PostgreSQL server for tests, from the distribution's packaged binaries.

The tests run as root, and PostgreSQL refuses to run as root, so initdb and postgres run as
the `postgres` system user via `runuser -u postgres --`. Everything lives in one temporary
directory owned by that user: the data directory, the unix socket and the server log. The
server listens on 127.0.0.1 on a free port with trust authentication and durability off
(fsync=off): it only ever holds test data.

    with temp_postgres() as pg:
        url = pg.create_database()   # postgresql://postgres@127.0.0.1:PORT/test_1

Databases are created with an ICU en-US collation by default, like a typical production
database (whose default collation is not byte order), so that ordering bugs that SQLite's
BINARY collation would hide show up in tests.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.server import free_port

PG_USER = "postgres"
DEFAULT_ICU_LOCALE = "en-US"


class PostgresUnavailable(RuntimeError):
    pass


def find_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin (or $CARGOHOLD_PG_BIN)."""
    override = os.environ.get("CARGOHOLD_PG_BIN")
    candidates = [override] if override else sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
        if Path(p).parent.name.isdigit() else 0)
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "postgres").is_file():
            return Path(candidate)
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (looked for /usr/lib/postgresql/*/bin/initdb; "
        "set CARGOHOLD_PG_BIN to override). Install them with: apt-get install -y postgresql")


def _check_prerequisites() -> None:
    if shutil.which("runuser") is None:
        raise PostgresUnavailable("`runuser` (util-linux) is needed to run PostgreSQL as its own user")
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"system user {PG_USER!r} does not exist; install the postgresql package "
            "(apt-get install -y postgresql)") from None
    if os.geteuid() != 0:
        raise PostgresUnavailable("starting PostgreSQL as the postgres user needs root (runuser)")


class PostgresServer:
    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self.host = "127.0.0.1"
        self.port = 0
        self.tmp: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)

    @property
    def data_dir(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "data"

    @property
    def log_path(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@{self.host}:{self.port}/{database}"

    def _as_postgres(self, *args: str) -> list[str]:
        return ["runuser", "-u", PG_USER, "--", *args]

    def _log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> PostgresServer:
        _check_prerequisites()
        pw = pwd.getpwnam(PG_USER)
        self.tmp = Path(tempfile.mkdtemp(prefix="cargohold-pg-"))
        try:
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            os.chmod(self.tmp, 0o700)
            result = subprocess.run(
                self._as_postgres(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", PG_USER,
                                  "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"),
                capture_output=True, timeout=timeout, check=False)
            if result.returncode != 0:
                raise PostgresUnavailable(
                    f"initdb failed ({result.returncode}):\n{result.stdout.decode(errors='replace')}"
                    f"\n{result.stderr.decode(errors='replace')}")
            self.port = free_port(self.host)
            log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
            try:
                self.proc = subprocess.Popen(
                    self._as_postgres(
                        str(self.bin_dir / "postgres"), "-D", str(self.data_dir),
                        "-c", f"listen_addresses={self.host}", "-p", str(self.port),
                        "-c", f"unix_socket_directories={self.tmp}",
                        "-c", "fsync=off", "-c", "synchronous_commit=off",
                        "-c", "full_page_writes=off", "-c", "max_connections=200"),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            finally:
                log.close()
            atexit.register(self.stop)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise PostgresUnavailable(
                    f"postgres exited with {self.proc.returncode}:\n{self._log_tail()}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.05)
        raise PostgresUnavailable(f"postgres not ready after {timeout}s ({last}):\n{self._log_tail()}")

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError, AssertionError):
            return None

    def stop(self) -> None:
        """Fast shutdown, then remove every file. Safe to call more than once."""
        if self.proc is not None:
            pid = self._postmaster_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        atexit.unregister(self.stop)

    # -- databases ----------------------------------------------------------------------------

    def create_database(self, name: str | None = None,
                        icu_locale: str | None = DEFAULT_ICU_LOCALE) -> str:
        """Create an empty database and return its SQLAlchemy URL (postgresql://...)."""
        import psycopg
        from psycopg import sql

        name = name or f"test_{next(self._names)}"
        query = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name))
        if icu_locale:
            query = sql.SQL("{} LOCALE_PROVIDER icu ICU_LOCALE {}").format(query, sql.Literal(icu_locale))
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(query)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def temp_postgres(bin_dir: Path | None = None) -> Iterator[PostgresServer]:
    server = PostgresServer(bin_dir).start()
    try:
        yield server
    finally:
        server.stop()
