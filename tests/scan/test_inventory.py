"""Inventory from layers: formats, whiteouts, package databases, size caps, SBOM round trips."""

from __future__ import annotations

import gzip
import hashlib
import io
import os

import pytest

from cargohold.domain.inventory import gobuildinfo, rpm
from cargohold.domain.inventory.osfiles import parse_dpkg_status
from cargohold.domain.inventory.packages import Inventory, finalize
from cargohold.domain.sbom import cyclonedx, read_sbom, spdx
from cargohold.services.scanning.layers import Layer, LayerWalker, Limits, ScanFailed
from tests.scan import builders as b


def inventory(layers: list[bytes], limits: Limits | None = None) -> Inventory:
    blobs = {"sha256:" + hashlib.sha256(data).hexdigest(): data for data in layers}
    chunked = {d: [data[i:i + 4096] for i in range(0, len(data), 4096)] or [b""] for d, data in blobs.items()}
    walker = LayerWalker(lambda digest: iter(chunked[digest]), limits)
    return finalize(walker.inventory([Layer(d, len(v), "application/vnd.oci.image.layer.v1.tar") for d, v in
                                      blobs.items()]))


def names(inv: Inventory, kind: str) -> dict[str, str]:
    return {p.name: p.version for p in inv.packages if p.type == kind}


def test_debian_image_in_three_layers() -> None:
    inv = inventory(b.debian_layers())
    assert inv.os is not None and inv.os.ecosystem == "Debian:12"  # through the os-release symlink
    debs = {p.name: p for p in inv.packages if p.type == "deb"}
    assert "oldpkg" not in debs  # not installed
    assert debs["libssl3"].source_name == "openssl" and debs["libssl3"].match_keys() == [
        ("openssl", "3.0.11-1~deb12u1")]
    assert debs["bash"].match_keys() == [("bash", "5.2.15-2")]  # the source version in parentheses
    assert debs["libssl3"].purl.startswith("pkg:deb/debian/libssl3@3.0.11-1~deb12u1?arch=amd64&distro=debian-12")
    assert names(inv, "pypi") == {"urllib3": "1.26.4"}  # requests was whited out
    assert names(inv, "npm") == {"lodash": "4.17.20", "@scope/widget": "1.0.0"}  # minimist hidden (opaque dir)
    assert names(inv, "maven") == {"org.apache.logging.log4j:log4j-core": "2.14.1",
                                   "com.fasterxml.jackson.core:jackson-databind": "2.9.10"}  # nested jar too
    assert names(inv, "golang") == {"stdlib": "1.20.1", "example.com/app": "v1.0.0", "golang.org/x/text": "v0.3.5",
                                    "github.com/safe/mod": "v1.0.0"}
    nested = next(p for p in inv.packages if p.name.endswith("jackson-databind"))
    assert nested.location == "app/lib/fat.jar!BOOT-INF/lib/jackson-databind-2.9.10.jar"
    assert {p.purl for p in inv.packages if p.type == "npm"} >= {"pkg:npm/%40scope/widget@1.0.0"}


def test_alpine_and_rpm_databases() -> None:
    alpine = inventory(b.alpine_layers())
    assert alpine.os is not None and alpine.os.ecosystem == "Alpine:v3.19"
    crypto = next(p for p in alpine.packages if p.name == "libcrypto3")
    assert crypto.source_name == "openssl" and crypto.match_keys() == [("openssl", "3.1.4-r0")]
    rocky = inventory(b.rocky_layers())
    assert rocky.os is not None and rocky.os.ecosystem == "Rocky Linux:9"
    libs = next(p for p in rocky.packages if p.name == "openssl-libs")
    assert (libs.version, libs.epoch, libs.source_name) == ("3.0.7-24.el9", "1", "openssl")
    assert libs.match_keys() == [("openssl-libs", "1:3.0.7-24.el9"), ("openssl", "1:3.0.7-24.el9")]
    assert "gpg-pubkey" not in names(rocky, "rpm")


def test_berkeleydb_rpm_database() -> None:
    headers = [rpm.build_header("openssl-libs", "1.0.2k", "25.el7_9", epoch=1,
                                source_rpm="openssl-1.0.2k-25.el7_9.src.rpm"),
               rpm.build_header("x" * 30, "1.0", "1", source_rpm="big-1.0-1.src.rpm") + bytes(9000)]
    layer = b.tar_layer({"etc/os-release": b.os_release("centos", "7"), "var/lib/rpm/Packages": rpm.build_bdb(headers)})
    inv = inventory([layer])
    assert names(inv, "rpm") == {"openssl-libs": "1.0.2k-25.el7_9", "x" * 30: "1.0-1"}


def test_distroless_status_d_and_plain_tar() -> None:
    layer = b.tar_layer({
        "etc/os-release": b.os_release("debian", "12"),
        "var/lib/dpkg/status.d/base": "Package: base-files\nVersion: 12.4\nArchitecture: amd64\n",
        "var/lib/dpkg/status.d/libssl3": "Package: libssl3\nVersion: 3.0.11-1\nSource: openssl\n",
        "var/lib/dpkg/status.d/libssl3.md5sums": "0123  /usr/lib/libssl.so.3\n",
    }, compression=None)
    inv = inventory([layer])
    assert names(inv, "deb") == {"base-files": "12.4", "libssl3": "3.0.11-1"}


def test_upper_layer_rewrites_and_removes_databases() -> None:
    lower = b.tar_layer({"etc/os-release": b.os_release("debian", "12"),
                         "var/lib/dpkg/status": b.dpkg_entry("curl", "7.0-1") + b.dpkg_entry("vim", "9.0-1")})
    upper = b.tar_layer({"var/lib/dpkg/status": b.dpkg_entry("curl", "8.0-1")}, compression="zstd")
    assert names(inventory([lower, upper]), "deb") == {"curl": "8.0-1"}
    gone = b.tar_layer({"var/lib/dpkg/.wh.status": b""})
    assert names(inventory([lower, gone]), "deb") == {}
    hidden = b.tar_layer({"var/lib/.wh..wh..opq": b""})
    assert names(inventory([lower, hidden]), "deb") == {}
    # An opaque marker hides lower layers only, not its own layer's files.
    same = b.tar_layer({"var/lib/dpkg/.wh..wh..opq": b"", "var/lib/dpkg/status": b.dpkg_entry("jq", "1.6-1")})
    assert names(inventory([lower, same]), "deb") == {"jq": "1.6-1"}


def test_go_build_info_streams_across_chunks() -> None:
    blob = b.go_binary("go1.22.1", ("example.com/m", "v0.1.0"), [("rsc.io/quote", "v1.5.2")])
    finder = gobuildinfo.BuildInfoFinder()
    for i in range(0, len(blob), 7):
        finder.feed(blob[i:i + 7])
    assert finder.result is not None and finder.result.go_version == "go1.22.1"
    assert finder.result.deps == [("rsc.io/quote", "v1.5.2")]
    with pytest.raises(ValueError):
        gobuildinfo.parse_buildinfo(gobuildinfo.MAGIC + bytes([8, 0]) + bytes(16))  # pre-1.18 pointer format


def test_bad_layers_fail_clearly() -> None:
    with pytest.raises(ScanFailed, match="could not be read as a gzip layer"):
        inventory([b"\x1f\x8b" + os.urandom(300)])
    with pytest.raises(ScanFailed, match="could not be read as a tar layer"):
        inventory([os.urandom(2000)])
    bomb = b.tar_layer({"zeros": bytes(3 << 20)})
    assert len(bomb) < 10_000
    with pytest.raises(ScanFailed, match="larger than the scan limit of 1048576 bytes"):
        inventory([bomb], Limits(max_layer_bytes=1 << 20))


def test_oversized_files_are_skipped_not_fatal() -> None:
    big_jar = b.jar({"x": ("g", "a", "1.0")}) + os.urandom(5000)
    layer = b.tar_layer({"etc/os-release": b.os_release("alpine", "3.19.0"), "app/big.jar": big_jar,
                         "lib/apk/db/installed": b.apk_entry("musl", "1.2.4-r2", "musl")})
    blobs = {"sha256:x": layer}
    walker = LayerWalker(lambda d: [blobs[d]], Limits(max_file_bytes=1000))
    inv = walker.inventory([Layer("sha256:x", len(layer), "x")])
    assert [p.name for p in inv.packages] == ["musl"]
    assert any("big.jar" in note for note in walker.notes)


def test_dpkg_parser_edge_cases() -> None:
    text = ("Package: a\nStatus: install ok installed\nVersion: 1\nSource: srca (2)\n\n"
            "Package: b\nStatus: purge ok not-installed\nVersion: 1\n\nPackage: c\nVersion: 1\n")
    packages = parse_dpkg_status(text, "var/lib/dpkg/status")
    assert [(p.name, p.source_name, p.source_version) for p in packages] == [("a", "srca", "2")]


def test_sbom_round_trip() -> None:
    inv = inventory(b.debian_layers())
    doc = cyclonedx(inv, image="app", digest="sha256:" + "a" * 64, created_ms=1_700_000_000_000)
    assert doc["bomFormat"] == "CycloneDX" and doc["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
    again = read_sbom(io.BytesIO(__import__("json").dumps(doc).encode()).getvalue())
    assert again.os is not None and again.os.ecosystem == "Debian:12"
    key = {(p.purl, p.location) for p in inv.packages}
    assert {(p.purl, p.location) for p in again.packages} == key
    assert [p.match_keys() for p in again.packages] == [p.match_keys() for p in inv.packages]
    doc2 = spdx(inv, image="app", digest="sha256:" + "a" * 64, created_ms=0)
    from_spdx = read_sbom(__import__("json").dumps(doc2).encode())
    assert {p.purl for p in from_spdx.packages} == {p.purl for p in inv.packages}
    with pytest.raises(ValueError):
        read_sbom(gzip.compress(b"x"))
