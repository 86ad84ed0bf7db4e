"""Small images for scanning tests: layer tarballs with package databases, built in memory."""

from __future__ import annotations

import gzip
import io
import json
import sqlite3
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from cargohold.domain.inventory import gobuildinfo, rpm


@dataclass(frozen=True)
class Link:
    target: str


@dataclass(frozen=True)
class Exe:
    data: bytes


Entry = bytes | str | Link | Exe | None  # None: a directory


def tar_layer(files: dict[str, Entry], compression: str | None = "gzip") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, value in files.items():
            info = tarfile.TarInfo(path)
            info.mtime = 1700000000
            if value is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif isinstance(value, Link):
                info.type = tarfile.SYMTYPE
                info.linkname = value.target
                tar.addfile(info)
            else:
                data = value.data if isinstance(value, Exe) else value.encode() if isinstance(value, str) else value
                info.size = len(data)
                info.mode = 0o755 if isinstance(value, Exe) else 0o644
                tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    if compression == "gzip":
        return gzip.compress(raw, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(raw)
    return raw


def os_release(os_id: str, version: str, name: str = "") -> str:
    return f'PRETTY_NAME="{name or os_id} {version}"\nNAME="{name or os_id}"\nID={os_id}\nVERSION_ID="{version}"\n'


def dpkg_entry(name: str, version: str, source: str | None = None, status: str = "install ok installed",
               arch: str = "amd64") -> str:
    lines = [f"Package: {name}", f"Status: {status}", "Priority: optional", f"Architecture: {arch}",
             f"Version: {version}"]
    if source:
        lines.append(f"Source: {source}")
    lines += ["Description: a package", " with a continuation line"]
    return "\n".join(lines) + "\n\n"


def apk_entry(name: str, version: str, origin: str, arch: str = "x86_64") -> str:
    return f"C:Q1abc=\nP:{name}\nV:{version}\nA:{arch}\nS:100\nI:200\nT:a package\no:{origin}\nm:someone\n\n"


def python_metadata(name: str, version: str) -> str:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test\n\nlong description\n"


def npm_package(name: str, version: str) -> str:
    return json.dumps({"name": name, "version": version, "description": "test"})


def jar(pom: dict[str, tuple[str, str, str]], nested: dict[str, bytes] | None = None) -> bytes:
    """A jar with META-INF/maven/<g>/<a>/pom.properties per entry and optional nested jars."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
        for _key, (group, artifact, version) in pom.items():
            zf.writestr(f"META-INF/maven/{group}/{artifact}/pom.properties",
                        f"#Generated\nversion={version}\ngroupId={group}\nartifactId={artifact}\n")
        for name, data in (nested or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def go_binary(go_version: str, main: tuple[str, str], deps: list[tuple[str, str]]) -> bytes:
    """An ELF-looking executable with Go 1.18+ build info (a crafted blob; no Go toolchain needed)."""
    prefix = b"\x7fELF\x02\x01\x01" + bytes(57) + b"\x90" * 3000 + gobuildinfo.MAGIC + b"not aligned"
    return gobuildinfo.build_blob(go_version, main[0], main, deps, prefix=prefix) + b"\xcc" * 2048


def rpmdb_sqlite(headers: list[bytes]) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rpmdb.sqlite"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
        conn.executemany("INSERT INTO Packages (blob) VALUES (?)", [(h,) for h in headers])
        conn.commit()
        conn.close()
        return path.read_bytes()


# -- the images the tests push -----------------------------------------------------------------

def debian_layers() -> list[bytes]:
    """A Debian 12 image in three layers; the last removes and hides vulnerable packages."""
    status = "".join([
        dpkg_entry("libssl3", "3.0.11-1~deb12u1", "openssl"),
        dpkg_entry("openssl", "3.0.11-1~deb12u1"),
        dpkg_entry("bash", "5.2.15-2+b2", "bash (5.2.15-2)"),
        dpkg_entry("zlib1g", "1:1.2.13.dfsg-1", "zlib"),
        dpkg_entry("tar", "1:2.0-1"),
        dpkg_entry("curl", "7.88.1-10+deb12u5"),
        dpkg_entry("libxml2", "2.9.14+dfsg-1.3"),
        dpkg_entry("libsystemd0", "252.22-1~deb12u1", "systemd"),
        dpkg_entry("oldpkg", "1.0-1", status="deinstall ok config-files"),
    ])
    base = tar_layer({
        "etc": None, "etc/os-release": Link("../usr/lib/os-release"),
        "usr/lib/os-release": os_release("debian", "12", "Debian GNU/Linux"),
        "var/lib/dpkg/status": status,
    })
    apps = tar_layer({
        "usr/lib/python3/dist-packages/requests-2.25.0.dist-info/METADATA": python_metadata("requests", "2.25.0"),
        "usr/lib/python3/dist-packages/urllib3-1.26.4.dist-info/METADATA": python_metadata("urllib3", "1.26.4"),
        "app/node_modules/lodash/package.json": npm_package("lodash", "4.17.20"),
        "app/node_modules/@scope/widget/package.json": npm_package("@scope/widget", "1.0.0"),
        "opt/tool/node_modules/minimist/package.json": npm_package("minimist", "1.2.0"),
        "app/lib/app.jar": jar({"log4j": ("org.apache.logging.log4j", "log4j-core", "2.14.1")}),
        "app/lib/fat.jar": jar({}, {"BOOT-INF/lib/jackson-databind-2.9.10.jar":
                                     jar({"jd": ("com.fasterxml.jackson.core", "jackson-databind", "2.9.10")})}),
        "usr/local/bin/app": Exe(go_binary("go1.20.1", ("example.com/app", "v1.0.0"),
                                           [("golang.org/x/text", "v0.3.5"), ("github.com/safe/mod", "v1.0.0")])),
    }, compression=None)
    cleanup = tar_layer({
        "usr/lib/python3/dist-packages/.wh.requests-2.25.0.dist-info": b"",
        "opt/tool/.wh..wh..opq": b"",
        "opt/tool/README": "hidden what was below",
    }, compression="zstd")
    return [base, apps, cleanup]


def alpine_layers() -> list[bytes]:
    installed = (apk_entry("libcrypto3", "3.1.4-r0", "openssl") + apk_entry("libssl3", "3.1.4-r0", "openssl")
                 + apk_entry("busybox", "1.36.1-r15", "busybox") + apk_entry("musl", "1.2.4_git20230717-r4", "musl"))
    return [tar_layer({"etc/os-release": os_release("alpine", "3.19.1", "Alpine Linux"),
                       "lib/apk/db/installed": installed}, compression="zstd")]


def rocky_layers() -> list[bytes]:
    headers = [rpm.build_header("openssl-libs", "3.0.7", "24.el9", epoch=1,
                                source_rpm="openssl-3.0.7-24.el9.src.rpm"),
               rpm.build_header("bash", "5.1.8", "6.el9", source_rpm="bash-5.1.8-6.el9.src.rpm"),
               rpm.build_header("gpg-pubkey", "1", "1")]
    return [tar_layer({"etc/os-release": os_release("rocky", "9.3", "Rocky Linux"),
                       "var/lib/rpm/rpmdb.sqlite": rpmdb_sqlite(headers)})]


# -- OSV fixture records -------------------------------------------------------------------------

def _rng(*events: dict[str, str], kind: str = "ECOSYSTEM") -> dict[str, Any]:
    return {"type": kind, "events": list(events)}


def _affected(ecosystem: str, name: str, *ranges: dict[str, Any], versions: list[str] | None = None,
              **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": name}, "ranges": list(ranges), **extra}
    if versions is not None:
        out["versions"] = versions
    return out


CVSS_CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
CVSS_HIGH = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"
CVSS_MEDIUM = "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:N"


def osv_records() -> list[dict[str, Any]]:
    modified = "2024-03-01T10:00:00Z"
    return [
        # Debian: source package with a fix; the image has an older version of binaries built from it.
        {"id": "DSA-5001-1", "modified": modified, "aliases": ["CVE-2024-0001"], "summary": "openssl: bad thing",
         "severity": [{"type": "CVSS_V3", "score": CVSS_CRITICAL}],
         "references": [{"type": "ADVISORY", "url": "https://security-tracker.debian.org/tracker/DSA-5001-1"}],
         "affected": [_affected("Debian:12", "openssl", _rng({"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}))]},
        # binNMU: matched by the source version 5.2.15-2, fixed in 5.2.15-3
        {"id": "DEBIAN-CVE-2024-0002", "modified": "2024-02-01T00:00:00Z", "upstream": ["CVE-2024-0002"],
         "details": "bash: parsing", "database_specific": {"urgency": "low"},
         "affected": [_affected("Debian:12", "bash", _rng({"introduced": "0"}, {"fixed": "5.2.15-3"}))]},
        # epoch: fixed 1:1.2.13.dfsg-2 > installed 1:1.2.13.dfsg-1 -> affected
        {"id": "CVE-2024-0003", "modified": modified, "summary": "zlib overflow",
         "severity": [{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}],
         "affected": [_affected("Debian:12", "zlib", _rng({"introduced": "0"}, {"fixed": "1:1.2.13.dfsg-2"}))]},
        # epoch: installed 1:2.0-1 is newer than the fix 2.5-1 -> not affected
        {"id": "CVE-2024-0004", "modified": modified, "summary": "tar",
         "affected": [_affected("Debian:12", "tar", _rng({"introduced": "0"}, {"fixed": "2.5-1"}))]},
        # installed 7.88.1-10+deb12u5 is newer than the fix -> not affected
        {"id": "CVE-2024-0005", "modified": modified, "summary": "curl",
         "affected": [_affected("Debian:12", "curl", _rng({"introduced": "0"}, {"fixed": "7.88.1-10+deb12u4"}))]},
        # last_affected is inclusive
        {"id": "CVE-2024-0006", "modified": modified, "summary": "libxml2",
         "severity": [{"type": "CVSS_V3", "score": CVSS_MEDIUM}],
         "affected": [_affected("Debian:12", "libxml2", _rng({"introduced": "2.9.0"},
                                                             {"last_affected": "2.9.14+dfsg-1.3"}))]},
        # unfixed
        {"id": "CVE-2024-0007", "modified": modified, "summary": "systemd, no fix yet",
         "affected": [_affected("Debian:12", "systemd", _rng({"introduced": "0"}))]},
        # another Debian release only: must not match Debian 12
        {"id": "CVE-2024-0008", "modified": modified, "summary": "bookworm is fine",
         "affected": [_affected("Debian:11", "curl", _rng({"introduced": "0"}))]},
        # PyPI: several ranges; urllib3 1.26.4 is in the first
        {"id": "GHSA-aaaa-bbbb-cccc", "modified": modified, "aliases": ["CVE-2024-0010"], "summary": "urllib3",
         "database_specific": {"severity": "MODERATE"},
         "affected": [_affected("PyPI", "urllib3", _rng({"introduced": "0"}, {"fixed": "1.26.5"}),
                                _rng({"introduced": "2.0.0"}, {"fixed": "2.0.3"}))]},
        # PyPI: requests was removed by a whiteout -> must not match
        {"id": "GHSA-rrrr-rrrr-rrrr", "modified": modified, "summary": "requests",
         "severity": [{"type": "CVSS_V3", "score": CVSS_HIGH}],
         "affected": [_affected("PyPI", "requests", _rng({"introduced": "0"}, {"fixed": "2.31.0"}))]},
        # npm, SEMVER range
        {"id": "GHSA-lodash-0001", "modified": modified, "aliases": ["CVE-2021-23337"], "summary": "lodash",
         "severity": [{"type": "CVSS_V3", "score": CVSS_HIGH}],
         "affected": [_affected("npm", "lodash", _rng({"introduced": "0"}, {"fixed": "4.17.21"}, kind="SEMVER"))]},
        # npm, hidden by an opaque directory -> must not match
        {"id": "GHSA-minimist-0001", "modified": modified, "summary": "minimist",
         "affected": [_affected("npm", "minimist", _rng({"introduced": "0"}, {"fixed": "1.2.6"}, kind="SEMVER"))]},
        # Maven
        {"id": "GHSA-jfh8-c2jp-5v3q", "modified": modified, "aliases": ["CVE-2021-44228"], "summary": "Log4Shell",
         "severity": [{"type": "CVSS_V3", "score": CVSS_CRITICAL}],
         "affected": [_affected("Maven", "org.apache.logging.log4j:log4j-core",
                                _rng({"introduced": "2.0-beta9"}, {"fixed": "2.15.0"}))]},
        # Maven, exact versions list (nested jar)
        {"id": "GHSA-jackson-0001", "modified": modified, "summary": "jackson-databind",
         "database_specific": {"severity": "HIGH"},
         "affected": [_affected("Maven", "com.fasterxml.jackson.core:jackson-databind",
                                versions=["2.9.9", "2.9.10"])]},
        # Go module and the standard library
        {"id": "GO-2021-0113", "modified": modified, "aliases": ["CVE-2020-28851"], "summary": "x/text",
         "affected": [_affected("Go", "golang.org/x/text", _rng({"introduced": "0"}, {"fixed": "0.3.7"},
                                                                kind="SEMVER"))]},
        {"id": "GO-2023-1621", "modified": modified, "aliases": ["CVE-2023-24532"], "summary": "crypto/internal/nistec",
         "affected": [_affected("Go", "stdlib", _rng({"introduced": "1.20.0"}, {"fixed": "1.20.2"}, kind="SEMVER"))]},
        # Alpine, matched by origin
        {"id": "ALPINE-CVE-2024-0020", "modified": modified, "upstream": ["CVE-2024-0020"], "summary": "openssl apk",
         "severity": [{"type": "CVSS_V3", "score": CVSS_HIGH}],
         "affected": [_affected("Alpine:v3.19", "openssl", _rng({"introduced": "0"}, {"fixed": "3.1.4-r1"}))]},
        # Alpine: installed busybox newer than the fix
        {"id": "ALPINE-CVE-2024-0021", "modified": modified, "summary": "busybox",
         "affected": [_affected("Alpine:v3.19", "busybox", _rng({"introduced": "0"}, {"fixed": "1.36.1-r14"}))]},
        # RPM with epochs, matched through the source package
        {"id": "RLSA-2024:0001", "modified": modified, "aliases": ["CVE-2024-0030"], "summary": "openssl rpm",
         "severity": [{"type": "CVSS_V3", "score": CVSS_HIGH}],
         "affected": [_affected("Rocky Linux:9", "openssl", _rng({"introduced": "0"}, {"fixed": "1:3.0.7-25.el9_3"}))]},
        # RPM: epoch 0 fix below the installed -> not affected
        {"id": "RLSA-2024:0002", "modified": modified, "summary": "bash rpm",
         "affected": [_affected("Rocky Linux:9", "bash", _rng({"introduced": "0"}, {"fixed": "5.1.8-4.el9"}))]},
    ]


# The findings (name, package_name) each image must show, and nothing else.
DEBIAN_EXPECTED = {
    ("CVE-2024-0001", "openssl"), ("CVE-2024-0002", "bash"), ("CVE-2024-0003", "zlib"), ("CVE-2024-0006", "libxml2"),
    ("CVE-2024-0007", "systemd"), ("CVE-2024-0010", "urllib3"), ("CVE-2021-23337", "lodash"),
    ("CVE-2021-44228", "org.apache.logging.log4j:log4j-core"),
    ("GHSA-jackson-0001", "com.fasterxml.jackson.core:jackson-databind"),
    ("CVE-2020-28851", "golang.org/x/text"), ("CVE-2023-24532", "stdlib"),
}
ALPINE_EXPECTED = {("CVE-2024-0020", "openssl")}
ROCKY_EXPECTED = {("CVE-2024-0030", "openssl")}


def write_osv_dir(root: Path, records: list[dict[str, Any]] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for record in records if records is not None else osv_records():
        (root / f"{record['id'].replace(':', '_')}.json").write_text(json.dumps(record))
    return root


def write_osv_zip(path: Path, records: list[dict[str, Any]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for record in records:
            zf.writestr(f"{record['id'].replace(':', '_')}.json", json.dumps(record))
    return path
