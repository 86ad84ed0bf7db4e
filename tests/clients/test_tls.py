"""HTTPS with `--tls-self-signed`, verified for real: docker, skopeo and Python against a non-loopback host.

Docker treats every registry whose host resolves into 127.0.0.0/8 as insecure and skips TLS
verification there, so a loopback test would prove nothing. This module therefore makes a test
host of its own: a network namespace joined to the root namespace by a veth pair
(10.203.0.1/30 here, 10.203.0.2/30 in the namespace), runs `cargohold serve --tls-self-signed`
inside it, and maps registry.cargohold.test to 10.203.0.2 with an /etc/hosts entry. Traffic goes
only to that address. The private dockerd (tests/support/dockerd.py) then logs in, pushes and
pulls with the generated CA placed exactly where the server's start-up output says
(/etc/docker/certs.d/<host:port>/ca.crt), and fails with a certificate error without it.

Everything made here (namespace, veth pair, hosts entry, certs.d directory, the server) is undone
in fixture teardown, also when a test fails; a leftover of a killed run is cleared before the
next one. Needs root and iproute2 (`ip`); skipped otherwise (failed with CARGOHOLD_REQUIRE_CLIENTS=1).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support import oci_layout as oci
from tests.support.clients import Skopeo, missing_tools, unavailable
from tests.support.dockerd import DockerCli
from tests.support.server import ServerProcess, free_port, temp_server

pytestmark = [pytest.mark.clients, pytest.mark.timeout(120)]

NETNS = "cargohold-tls"
VETH_HOST, VETH_NS = "chtls0", "chtls1"
HOST_ADDR, NS_ADDR, PREFIX = "10.203.0.1", "10.203.0.2", 30
REGISTRY_NAME = "registry.cargohold.test"
HOSTS = Path("/etc/hosts")
HOSTS_MARKER = "# cargohold test (tests/clients/test_tls.py)"
CERTS_D = Path("/etc/docker/certs.d")
LOCK_TIMEOUT = 60.0

_TRUST_LINE = re.compile(r"^Trust the CA:\s+sudo mkdir -p (\S+) && sudo cp (\S+) (\S+)$", re.MULTILINE)


# -- host plumbing ------------------------------------------------------------------------------

def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _netns_exists() -> bool:
    listing = _ip("netns", "list", check=False).stdout.split("\n")
    return any(line.split(" ", 1)[0] == NETNS for line in listing)


def _remove_netns() -> None:
    """Kill what still runs in our namespace (only ever our server), then drop it and the veth pair."""
    if _netns_exists():
        for pid in _ip("netns", "pids", NETNS, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _ip("netns", "pids", NETNS, check=False).stdout.split() and time.monotonic() < deadline:
            time.sleep(0.1)
        _ip("netns", "del", NETNS, check=False)
    if _ip("link", "show", VETH_HOST, check=False).returncode == 0:
        _ip("link", "del", VETH_HOST, check=False)


def _create_netns() -> None:
    _ip("netns", "add", NETNS)
    _ip("link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS)
    _ip("link", "set", VETH_NS, "netns", NETNS)
    _ip("addr", "add", f"{HOST_ADDR}/{PREFIX}", "dev", VETH_HOST)
    _ip("link", "set", VETH_HOST, "up")
    _ip("netns", "exec", NETNS, "ip", "addr", "add", f"{NS_ADDR}/{PREFIX}", "dev", VETH_NS)
    _ip("netns", "exec", NETNS, "ip", "link", "set", VETH_NS, "up")
    _ip("netns", "exec", NETNS, "ip", "link", "set", "lo", "up")


def _without_our_hosts_lines(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(line for line in lines if HOSTS_MARKER.encode() not in line)


def _write_in_place(path: Path, data: bytes) -> None:
    # Truncate and write the same inode: /etc/hosts is often a bind mount that a rename would break.
    with open(path, "r+b") as fh:
        fh.write(data)
        fh.truncate()


@contextlib.contextmanager
def _hosts_entry(address: str, name: str) -> Iterator[None]:
    """Add `address name` to /etc/hosts; put the file back byte for byte afterwards."""
    current = HOSTS.read_bytes()
    original = _without_our_hosts_lines(current)  # a killed earlier run may have left its line
    if original != current:
        _write_in_place(HOSTS, original)
    sep = b"" if not original or original.endswith(b"\n") else b"\n"
    changed = original + sep + f"{address} {name} {HOSTS_MARKER}\n".encode()
    _write_in_place(HOSTS, changed)
    try:
        yield
    finally:
        now = HOSTS.read_bytes()
        # Somebody else may have edited the file meanwhile: then only our line goes.
        restored = original if now == changed else _without_our_hosts_lines(now)
        _write_in_place(HOSTS, restored)


def _remove_stale_certs_dirs() -> None:
    if CERTS_D.is_dir():
        for stale in CERTS_D.glob(f"{REGISTRY_NAME}:*"):
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """One run of this module at a time on the machine (the namespace, addresses and name are fixed).

    The lock is an advisory flock on /etc/hosts itself, the shared file this module edits, so no
    lock file is left behind."""
    with open(HOSTS, "rb") as fh:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail("another run of tests/clients/test_tls.py holds the lock")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _why_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces and /etc/hosts need root"
    return missing_tools("ip")


# -- fixtures -----------------------------------------------------------------------------------

@dataclass
class TlsRegistry:
    server: ServerProcess
    port: int

    @property
    def address(self) -> str:
        return f"{REGISTRY_NAME}:{self.port}"

    @property
    def tls_dir(self) -> Path:
        return self.server.data_dir / "tls"

    @property
    def ca(self) -> Path:
        return self.tls_dir / "ca.crt"

    def ssl_context(self, **versions: ssl.TLSVersion) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        for attr, value in versions.items():
            setattr(ctx, attr, value)
        return ctx


@pytest.fixture(scope="module")
def tls_registry() -> Iterator[TlsRegistry]:
    """cargohold with --tls-self-signed in a network namespace, reachable as registry.cargohold.test."""
    unavailable(_why_unavailable())
    with contextlib.ExitStack() as stack:
        stack.enter_context(_exclusive())
        _remove_netns()  # leftovers of a run that was killed before its teardown
        _remove_stale_certs_dirs()
        stack.callback(_remove_netns)
        try:
            _create_netns()
        except RuntimeError as exc:  # e.g. a container without CAP_SYS_ADMIN / CAP_NET_ADMIN
            unavailable(f"cannot make a network namespace here: {exc}")
        stack.enter_context(_hosts_entry(NS_ADDR, REGISTRY_NAME))
        port = free_port()  # any port is free in the fresh namespace
        server = temp_server(host=NS_ADDR, port=port, scheme="https", wrapper=["ip", "netns", "exec", NETNS],
                             extra_args=["--tls-self-signed", "--tls-name", REGISTRY_NAME,
                                         "--registry-host", f"{REGISTRY_NAME}:{port}"])
        stack.callback(shutil.rmtree, server.data_dir.parent, True)
        stack.callback(server.stop)
        server.start(timeout=60)
        yield TlsRegistry(server, port)


@pytest.fixture()
def docker_trusts_ca(tls_registry: TlsRegistry) -> Iterator[Path]:
    """The CA installed the way `cargohold serve` says; removed again (and certs.d if we made it)."""
    match = _TRUST_LINE.search(tls_registry.server.log())
    assert match, tls_registry.server.log()
    directory, source, target = Path(match[1]), Path(match[2]), Path(match[3])
    made_certs_d = not CERTS_D.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        yield target
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if made_certs_d:
            with contextlib.suppress(OSError):
                CERTS_D.rmdir()  # only when empty


def _build_image(docker: DockerCli, context: Path, ref: str) -> str:
    context.mkdir(parents=True)
    (context / "payload.bin").write_bytes(os.urandom(64 * 1024))
    (context / "Dockerfile").write_text('FROM scratch\nCOPY payload.bin /payload.bin\nCMD ["/nothing"]\n')
    docker("build", "-q", "-t", ref, str(context))
    return docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def _unique_repo(prefix: str) -> str:
    return f"clients/{prefix}-{uuid.uuid4().hex[:10]}"


# -- the generated certificate and the start-up output ------------------------------------------

def test_self_signed_files_names_and_trust_instructions(tls_registry: TlsRegistry) -> None:
    tls_dir = tls_registry.tls_dir
    for name in ("ca.crt", "ca.key", "server.crt", "server.key"):
        assert (tls_dir / name).is_file(), name
    assert (tls_dir / "server.key").stat().st_mode & 0o777 == 0o600
    assert (tls_dir / "ca.key").stat().st_mode & 0o777 == 0o600

    ca = x509.load_pem_x509_certificate(tls_registry.ca.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    chain = x509.load_pem_x509_certificates((tls_dir / "server.crt").read_bytes())
    leaf = chain[0]
    assert chain[1:] == [ca]  # the served chain ends with the CA
    leaf.verify_directly_issued_by(ca)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {REGISTRY_NAME, "localhost"} <= set(san.get_values_for_type(x509.DNSName))
    assert {NS_ADDR, "127.0.0.1"} <= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}

    log = tls_registry.server.log()
    assert f"cargohold listening on https://{tls_registry.address} " in log, log
    match = _TRUST_LINE.search(log)
    assert match, log
    assert match[1] == f"/etc/docker/certs.d/{tls_registry.address}"
    assert Path(match[2]) == tls_registry.ca.resolve()
    assert match[3] == f"/etc/docker/certs.d/{tls_registry.address}/ca.crt"


# -- Python's ssl -------------------------------------------------------------------------------

def _handshake(tls_registry: TlsRegistry, ctx: ssl.SSLContext, server_hostname: str) -> ssl.SSLSocket:
    raw = socket.create_connection((NS_ADDR, tls_registry.port), timeout=10)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


def test_python_ssl_tls12_verifies_names(tls_registry: TlsRegistry) -> None:
    tls12 = tls_registry.ssl_context(minimum_version=ssl.TLSVersion.TLSv1_2,
                                     maximum_version=ssl.TLSVersion.TLSv1_2)
    for hostname in (REGISTRY_NAME, NS_ADDR):  # hostname checking is on: both must be in the SAN
        with _handshake(tls_registry, tls12, hostname) as tls:
            assert tls.version() == "TLSv1.2"
            cert = tls.getpeercert()
            assert ("DNS", REGISTRY_NAME) in cert["subjectAltName"]
            assert ("IP Address", NS_ADDR) in cert["subjectAltName"]

    with _handshake(tls_registry, tls_registry.ssl_context(), REGISTRY_NAME) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")

    with pytest.raises(ssl.SSLCertVerificationError):  # a name the certificate does not carry
        _handshake(tls_registry, tls_registry.ssl_context(), "other.cargohold.test").close()
    with pytest.raises(ssl.SSLCertVerificationError):  # the system trust store does not know our CA
        _handshake(tls_registry, ssl.create_default_context(), REGISTRY_NAME).close()

    # The whole stack over verified TLS, by name (resolved through the test's /etc/hosts entry).
    with httpx.Client(verify=tls12, auth=tls_registry.server.auth, timeout=30) as client:
        r = client.get(f"https://{tls_registry.address}/v2/")
        assert r.status_code == 200, r.text
        assert r.headers.get("docker-distribution-api-version") == "registry/2.0"


def test_tls_below_12_refused(tls_registry: TlsRegistry) -> None:
    ctx = tls_registry.ssl_context(minimum_version=ssl.TLSVersion.TLSv1,
                                   maximum_version=ssl.TLSVersion.TLSv1_1)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.0/1.1 at all
    with pytest.raises(ssl.SSLError) as info:
        _handshake(tls_registry, ctx, REGISTRY_NAME).close()
    message = str(info.value).upper()
    if "NO_PROTOCOLS_AVAILABLE" in message:
        pytest.skip("this OpenSSL cannot offer TLS < 1.2, so the server's minimum cannot be probed")
    # Refused by the server, not by us: a protocol_version alert, or (asyncio's TLS, which does
    # not flush the alert before closing) the connection closed in the middle of the handshake.
    assert "ALERT" in message or "VERSION" in message or "EOF" in message, message


# -- docker -------------------------------------------------------------------------------------

def test_docker_rejects_registry_without_trusted_ca(tls_registry: TlsRegistry, docker: DockerCli,
                                                     tmp_path: Path) -> None:
    assert not (CERTS_D / tls_registry.address).exists()
    ref = f"{tls_registry.address}/{_unique_repo('tls-untrusted')}:v1"
    _build_image(docker, tmp_path / "ctx", ref)
    try:
        server = tls_registry.server
        login = docker("login", tls_registry.address, "-u", server.key_id, "--password-stdin",
                       input=server.secret, check=False)
        assert login.returncode != 0, login.stdout
        assert "x509" in login.stderr and "certificate" in login.stderr, login.stderr
        push = docker("push", ref, check=False)
        assert push.returncode != 0, push.stdout
        output = push.stdout + push.stderr
        assert "x509" in output and "certificate signed by unknown authority" in output, output
    finally:
        docker("rmi", "-f", ref, check=False)


def test_docker_login_push_pull_over_verified_tls(tls_registry: TlsRegistry, docker_trusts_ca: Path,
                                                   docker: DockerCli, tmp_path: Path) -> None:
    server = tls_registry.server
    repo = _unique_repo("tls-docker")
    ref = f"{tls_registry.address}/{repo}:v1"
    image_id = _build_image(docker, tmp_path / "ctx", ref)
    try:
        out = docker("login", tls_registry.address, "-u", server.key_id, "--password-stdin", input=server.secret)
        assert "Login Succeeded" in out.stdout
        push = docker("push", ref)
        m = re.search(r"digest: (sha256:[0-9a-f]{64}) size: \d+", push.stdout)
        assert m, push.stdout

        with httpx.Client(verify=tls_registry.ssl_context(), auth=server.auth, timeout=30) as client:
            r = client.head(f"https://{tls_registry.address}/v2/{repo}/manifests/v1", headers={"Accept": ", ".join((
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.oci.image.manifest.v1+json"))})
        assert r.status_code == 200, r.headers
        assert r.headers["docker-content-digest"] == m[1]

        docker("rmi", "-f", ref)
        pull = docker("pull", ref)
        assert m[1] in pull.stdout, pull.stdout
        assert docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip() == image_id
    finally:
        docker("rmi", "-f", ref, check=False)
        docker("logout", tls_registry.address, check=False)


# -- skopeo -------------------------------------------------------------------------------------

def test_skopeo_verifies_with_cert_dir(tls_registry: TlsRegistry, tmp_path: Path) -> None:
    unavailable(missing_tools("skopeo"))
    (tmp_path / "skopeo").mkdir()
    skopeo = Skopeo(tls_registry.server, tmp_path / "skopeo")
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copyfile(tls_registry.ca, certs / "ca.crt")
    untrusted = tmp_path / "no-certs"
    untrusted.mkdir()

    src = oci.Layout(tmp_path / "src")
    image = oci.make_image((2048, 64 * 1024))
    src.add_image(image)
    src.tag("v1", oci.OCI_MANIFEST, image.manifest)
    dest_ref = f"docker://{tls_registry.address}/{_unique_repo('tls-skopeo')}:v1"

    refused = skopeo("copy", "--retry-times", "0", "--dest-tls-verify=true", "--dest-cert-dir", str(untrusted),
                     "--dest-creds", skopeo.creds, f"oci:{src.path}:v1", dest_ref, check=False)
    assert refused.returncode != 0
    assert "x509" in refused.stderr and "certificate" in refused.stderr, refused.stderr

    skopeo("copy", "--retry-times", "0", "--dest-tls-verify=true", "--dest-cert-dir", str(certs),
           "--dest-creds", skopeo.creds, f"oci:{src.path}:v1", dest_ref)
    dest = oci.Layout(tmp_path / "back")
    skopeo("copy", "--retry-times", "0", "--src-tls-verify=true", "--src-cert-dir", str(certs),
           "--src-creds", skopeo.creds, dest_ref, f"oci:{dest.path}:v1")
    entry = dest.ref_descriptor("v1")
    assert entry["digest"] == image.digest
    for d in (image.config_digest, *image.layer_digests):
        assert oci.sha256(dest.read_blob(d)) == d


def test_large_bodies_over_tls_both_ways(tls_registry: TlsRegistry) -> None:
    """A body with a Content-Length is read into pieces through the TLS layer too (cargohold's own
    server); downloads over TLS take the copy path (no sendfile through TLS), several at once."""
    data = os.urandom(5 << 20)
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    repo = f"tls-bodies-{os.getpid()}"
    with httpx.Client(base_url=f"https://{tls_registry.address}", verify=tls_registry.ssl_context(),
                      auth=tls_registry.server.auth, timeout=60) as client:
        location = client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
        half = len(data) // 2
        r = client.patch(location, content=data[:half], headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"0-{half - 1}"})
        assert r.status_code == 202, r.text
        r = client.put(r.headers["location"], params={"digest": d}, content=data[half:],
                       headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        pulled: list[bytes] = []

        def pull() -> None:
            pulled.append(client.get(f"/v2/{repo}/blobs/{d}").content)

        threads = [threading.Thread(target=pull) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert pulled == [data] * 3
