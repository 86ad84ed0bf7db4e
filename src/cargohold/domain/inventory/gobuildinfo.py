"""Go binaries' build information (what `go version -m` prints), read from the raw bytes.

Since Go 1.18 the linker writes a 32-byte header starting with "\\xff Go buildinf:" at a
16-byte-aligned offset, followed (flag 0x2) by two varint-prefixed strings: the Go version
and the module information ("path", "mod", "dep", "=>" lines). BuildInfoFinder looks for it
while a file streams past, so a binary is never held whole. Binaries from older toolchains
store pointers instead of inline strings; those are not read (a documented gap).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cargohold.domain.inventory.packages import Package

MAGIC = b"\xff Go buildinf:"
HEADER = 32
_INLINE = 0x2
_MAX_TAIL = 1 << 20  # build info larger than this is not Go's


class Incomplete(Exception):
    """More bytes are needed."""


@dataclass
class BuildInfo:
    go_version: str
    path: str = ""
    main: tuple[str, str] | None = None
    deps: list[tuple[str, str]] = field(default_factory=list)


def _uvarint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise Incomplete
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint overflow")


def _string(data: bytes | bytearray, pos: int) -> tuple[bytes, int]:
    length, pos = _uvarint(data, pos)
    if length > _MAX_TAIL:
        raise ValueError("implausible string length")
    if pos + length > len(data):
        raise Incomplete
    return bytes(data[pos:pos + length]), pos + length


def parse_buildinfo(data: bytes | bytearray) -> BuildInfo:
    """Parse from the magic onwards. Raises Incomplete (need more bytes) or ValueError."""
    if len(data) < HEADER:
        raise Incomplete
    if bytes(data[:len(MAGIC)]) != MAGIC:
        raise ValueError("no Go build info magic")
    if not data[15] & _INLINE:
        raise ValueError("pre-1.18 build info (pointer format) is not supported")
    raw_version, pos = _string(data, HEADER)
    raw_modinfo, _ = _string(data, pos)
    version = raw_version.decode("utf-8", "replace")
    if not version.startswith("go") and not version.startswith("devel"):
        raise ValueError("not a Go version string")
    if len(raw_modinfo) >= 33 and raw_modinfo[-17:-16] == b"\n":
        raw_modinfo = raw_modinfo[16:-16]  # sentinels around the module information
    info = BuildInfo(version)
    for line in raw_modinfo.decode("utf-8", "replace").splitlines():
        parts = line.split("\t")
        if parts[0] == "path" and len(parts) > 1:
            info.path = parts[1]
        elif parts[0] == "mod" and len(parts) > 2:
            info.main = (parts[1], parts[2])
        elif parts[0] == "dep" and len(parts) > 2:
            info.deps.append((parts[1], parts[2]))
        elif parts[0] == "=>" and len(parts) > 2 and info.deps:
            info.deps[-1] = (parts[1], parts[2])  # a replace directive: what was really built
    return info


_GO_VERSION = re.compile(r"^go(\d+(?:\.\d+){0,2}(?:(?:rc|beta)\d+)?)")


def packages(info: BuildInfo, location: str) -> list[Package]:
    out = []
    m = _GO_VERSION.match(info.go_version)
    if m:
        out.append(Package("golang", "stdlib", m[1], location=location))
    if info.main and info.main[1] and info.main[1] != "(devel)":
        out.append(Package("golang", info.main[0], info.main[1], location=location))
    for path, version in info.deps:
        if version and version != "(devel)":
            out.append(Package("golang", path, version, location=location))
    return out


class BuildInfoFinder:
    """Fed a file chunk by chunk, finds and parses the build info without keeping the file."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # file offset of _buf[0]
        self._found = False
        self.result: BuildInfo | None = None
        self.done = False

    def feed(self, chunk: bytes) -> None:
        if self.done:
            return
        self._buf += chunk
        while not self.done:
            if not self._found:
                self._search()
                if not self._found:
                    return
            try:
                self.result = parse_buildinfo(self._buf)
                self.done = True
            except Incomplete:
                if len(self._buf) > _MAX_TAIL:
                    self._skip()
                    continue
                return
            except ValueError:
                self._skip()

    def _skip(self) -> None:
        """That occurrence was not the header: look further on."""
        self._found = False
        del self._buf[:1]
        self._base += 1

    def _search(self) -> None:
        start = 0
        while True:
            idx = self._buf.find(MAGIC, start)
            if idx < 0:
                keep = len(MAGIC) - 1
                drop = max(len(self._buf) - keep, 0)
                del self._buf[:drop]
                self._base += drop
                return
            if (self._base + idx) % 16 == 0:
                del self._buf[:idx]
                self._base += idx
                self._found = True
                return
            start = idx + 1


def build_blob(go_version: str, path: str, main: tuple[str, str], deps: list[tuple[str, str]],
               prefix: bytes = b"") -> bytes:
    """A synthetic binary holding Go 1.18+ build info after `prefix` (used by tests and examples)."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte = n & 0x7F
            n >>= 7
            if n:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                return bytes(out)

    lines = [f"path\t{path}", f"mod\t{main[0]}\t{main[1]}\t"]
    lines += [f"dep\t{p}\t{v}\th1:x=" for p, v in deps]
    modinfo = (bytes.fromhex("3077af0c9274080241e1c107e6d618e6") + ("\n".join(lines) + "\n").encode()
               + bytes.fromhex("f932433186182072008242104116d8f2"))
    pad = (-len(prefix)) % 16
    header = MAGIC + bytes([8, _INLINE]) + bytes(HEADER - len(MAGIC) - 2)
    version = go_version.encode()
    return (prefix + bytes(pad) + header + varint(len(version)) + version + varint(len(modinfo)) + modinfo
            + bytes(64))
