"""An image's inventory from its layers: streamed, decompressed, applied in order with whiteouts.

Nothing is held whole: each layer is read as a stream (gzip, zstd or plain tar, told apart by
their magic bytes), member by member. Files that describe packages are parsed as they pass and
kept as parsed entries keyed by path, so a later layer that rewrites, deletes (".wh.NAME") or
hides (".wh..wh..opq") a path drops what the lower layers said about it. Files that need random
access (RPM databases, Java archives) are spooled to a temporary file, within a size cap.
Executables are searched for Go build information while they stream past.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import mmap
import posixpath
import sqlite3
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import zstandard

from cargohold.domain.inventory import gobuildinfo, language, osfiles, rpm
from cargohold.domain.inventory.packages import Inventory, OsRelease, Package

log = logging.getLogger("cargohold.scanning")

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
OS_RELEASE_PATHS = ("etc/os-release", "usr/lib/os-release")
DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d/"
APK_INSTALLED = "lib/apk/db/installed"
RPM_SQLITE = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
RPM_BDB = ("var/lib/rpm/Packages", "usr/lib/sysimage/rpm/Packages")
ELF_MAGIC = b"\x7fELF"
SMALL_FILE = 1 << 20  # package.json, METADATA, pom.properties, os-release
MAX_NESTING = 3  # jars inside jars inside jars


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class ScanFailed(Exception):
    """The image cannot be scanned; the message is the scan status description."""


@dataclass(frozen=True)
class Limits:
    max_layer_bytes: int = 8 << 30  # uncompressed bytes read from one layer
    max_file_bytes: int = 512 << 20  # one RPM database, Java archive or executable
    max_metadata_bytes: int = 64 << 20  # dpkg status, apk installed


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int
    media_type: str


@dataclass
class _Entry:
    layer: int
    packages: list[Package] = field(default_factory=list)
    os: OsRelease | None = None
    link: str | None = None  # a symlink to another path (os-release usually is one)


class _ChunkStream(io.RawIOBase):
    """A readable raw stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class _Capped(io.RawIOBase):
    """Counts what is read through it and stops the scan past a limit (decompression bombs)."""

    def __init__(self, inner: _Readable, limit: int, digest: str) -> None:
        self._inner = inner
        self._limit = limit
        self._digest = digest
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        n = len(data)
        self.count += n
        if self.count > self._limit:
            raise ScanFailed(f"Layer {self._digest} is larger than the scan limit of {self._limit} bytes "
                             f"uncompressed; the image was not scanned.")
        buffer[:n] = data
        return n


def _decompressed(raw: io.BufferedReader[Any]) -> tuple[str, _Readable]:
    head = raw.peek(4)[:4]
    if head.startswith(GZIP_MAGIC):
        return "gzip", gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith(ZSTD_MAGIC):
        reader: _Readable = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return "zstd", reader
    return "tar", raw


def _normalize(name: str) -> str | None:
    path = posixpath.normpath("/" + name).lstrip("/")
    return path if path and path != "." else None


class LayerWalker:
    """Applies layers in order and yields the image's (unfinalized) inventory."""

    def __init__(self, read: Callable[[str], Iterable[bytes]], limits: Limits | None = None) -> None:
        self._read = read
        self.limits = limits or Limits()
        self._files: dict[str, _Entry] = {}
        self.notes: list[str] = []

    # -- whole image ------------------------------------------------------------------------

    def inventory(self, layers: list[Layer]) -> Inventory:
        for index, layer in enumerate(layers):
            self.apply(index, layer)
        os_release: OsRelease | None = None
        for path in OS_RELEASE_PATHS:
            entry = self._resolve(path)
            if entry is not None and entry.os is not None:
                os_release = entry.os
                break
        packages = [p for path, entry in sorted(self._files.items()) for p in entry.packages]
        return Inventory(os_release, packages, self.notes)

    def _resolve(self, path: str, depth: int = 0) -> _Entry | None:
        entry = self._files.get(path)
        if entry is not None and entry.link is not None and depth < 8:
            return self._resolve(entry.link, depth + 1)
        return entry

    # -- one layer --------------------------------------------------------------------------

    def apply(self, index: int, layer: Layer) -> None:
        chunks = iter(self._read(layer.digest))
        raw = io.BufferedReader(_ChunkStream(chunks), 1 << 20)
        kind = "tar"
        try:
            kind, decompressed = _decompressed(raw)
            capped = _Capped(decompressed, self.limits.max_layer_bytes, layer.digest)
            stream = io.BufferedReader(capped, 1 << 20)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    self._member(index, layer, tar, member)
        except ScanFailed:
            raise
        except (tarfile.TarError, EOFError, zlib.error, zstandard.ZstdError, OSError, ValueError) as exc:
            raise ScanFailed(f"Layer {layer.digest} could not be read as a {kind} layer: "
                             f"{type(exc).__name__}: {exc}") from None
        finally:
            with contextlib.suppress(Exception):
                raw.close()

    def _drop(self, path: str, below: int | None = None, children_only: bool = False) -> None:
        prefix = path + "/" if path else ""
        for key in [k for k in self._files if (k.startswith(prefix) or (not children_only and k == path))]:
            if below is None or self._files[key].layer < below:
                del self._files[key]

    def _member(self, index: int, layer: Layer, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        path = _normalize(member.name)
        if path is None:
            return
        parent, base = posixpath.split(path)
        if base == ".wh..wh..opq":  # opaque directory: hide everything lower layers put there
            self._drop(parent, below=index, children_only=True)
            return
        if base.startswith(".wh."):
            self._drop(posixpath.join(parent, base[4:]), below=index)
            return
        if member.isdir():
            entry = self._files.get(path)
            if entry is not None and entry.layer < index:
                del self._files[path]
            return
        self._files.pop(path, None)
        if member.issym():
            if path in OS_RELEASE_PATHS:
                target = posixpath.normpath(posixpath.join(parent, member.linkname)).lstrip("/") \
                    if not member.linkname.startswith("/") else member.linkname.lstrip("/")
                self._files[path] = _Entry(index, link=target)
            return
        if member.islnk():
            linked = _normalize(member.linkname)
            source = self._files.get(linked) if linked else None
            if source is not None:
                self._files[path] = _Entry(index, [_moved(p, path, layer.digest) for p in source.packages],
                                           source.os, source.link)
            return
        if not member.isreg():
            return
        try:
            entry = self._regular(index, layer, tar, member, path)
        except ScanFailed:
            raise
        except (tarfile.TarError, EOFError, zlib.error, zstandard.ZstdError):
            raise
        except Exception as exc:  # one unreadable package file must not sink the scan
            self.notes.append(f"{path}: {type(exc).__name__}: {exc}"[:300])
            log.debug("scan: skipping %s: %s", path, exc)
            return
        if entry is not None:
            self._files[path] = entry

    def _small(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, limit: int) -> bytes | None:
        if member.size > limit:
            self.notes.append(f"{path}: {member.size} bytes, over the {limit}-byte limit; skipped")
            return None
        f = tar.extractfile(member)
        return f.read() if f is not None else None

    def _regular(self, index: int, layer: Layer, tar: tarfile.TarFile, member: tarfile.TarInfo,
                 path: str) -> _Entry | None:
        def entry(packages: list[Package]) -> _Entry:
            return _Entry(index, [_moved(p, p.location or path, layer.digest) for p in packages])

        if path in OS_RELEASE_PATHS:
            data = self._small(tar, member, path, SMALL_FILE)
            return None if data is None else _Entry(index, os=osfiles.parse_os_release(data.decode("utf-8", "replace")))
        if path == DPKG_STATUS:
            data = self._small(tar, member, path, self.limits.max_metadata_bytes)
            return None if data is None else entry(osfiles.parse_dpkg_status(data.decode("utf-8", "replace"), path))
        if path.startswith(DPKG_STATUS_D) and not path.endswith(".md5sums"):
            data = self._small(tar, member, path, self.limits.max_metadata_bytes)
            return None if data is None else entry(
                osfiles.parse_dpkg_status(data.decode("utf-8", "replace"), path, require_installed=False))
        if path == APK_INSTALLED:
            data = self._small(tar, member, path, self.limits.max_metadata_bytes)
            return None if data is None else entry(osfiles.parse_apk_installed(data.decode("utf-8", "replace"), path))
        if path in RPM_SQLITE or path in RPM_BDB:
            return self._spooled(tar, member, path, lambda f: entry(_rpm_packages(f, path)))
        if language.is_python_metadata(path):
            data = self._small(tar, member, path, SMALL_FILE)
            return None if data is None else entry(language.parse_python_metadata(data.decode("utf-8", "replace"),
                                                                                   path))
        if language.is_npm_package(path):
            data = self._small(tar, member, path, SMALL_FILE)
            return None if data is None else entry(language.parse_npm_package(data, path))
        if language.is_pom_properties(path):
            data = self._small(tar, member, path, SMALL_FILE)
            return None if data is None else entry(language.parse_pom_properties(data.decode("utf-8", "replace"),
                                                                                 path))
        if language.is_java_archive(path):
            return self._spooled(tar, member, path, lambda f: entry(self._java(f, path, 0)))
        if member.mode & 0o111 and member.size >= 1024:
            return self._executable(tar, member, path, entry)
        return None

    def _spooled(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str,
                 parse: Callable[[IO[bytes]], _Entry]) -> _Entry | None:
        if member.size > self.limits.max_file_bytes:
            self.notes.append(f"{path}: {member.size} bytes, over the {self.limits.max_file_bytes}-byte limit; "
                              "skipped")
            return None
        source = tar.extractfile(member)
        if source is None:
            return None
        with tempfile.NamedTemporaryFile(prefix="cargohold-scan-") as spool:
            while chunk := source.read(1 << 20):
                spool.write(chunk)
            spool.flush()
            spool.seek(0)
            return parse(spool)

    def _java(self, archive: IO[bytes], path: str, depth: int) -> list[Package]:
        out: list[Package] = []
        with zipfile.ZipFile(archive) as jar:
            for info in jar.infolist():
                if info.is_dir():
                    continue
                if language.is_pom_properties(info.filename) and info.file_size <= SMALL_FILE:
                    text = jar.read(info).decode("utf-8", "replace")
                    out += language.parse_pom_properties(text, path)
                elif language.is_java_archive(info.filename) and depth < MAX_NESTING:
                    if info.file_size > self.limits.max_file_bytes:
                        self.notes.append(f"{path}!{info.filename}: too large; skipped")
                        continue
                    with tempfile.TemporaryFile(prefix="cargohold-scan-") as nested, jar.open(info) as src:
                        while chunk := src.read(1 << 20):
                            nested.write(chunk)
                        nested.seek(0)
                        try:
                            out += self._java(nested, f"{path}!{info.filename}", depth + 1)
                        except zipfile.BadZipFile:
                            self.notes.append(f"{path}!{info.filename}: not a zip archive; skipped")
        return out

    def _executable(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str,
                    entry: Callable[[list[Package]], _Entry]) -> _Entry | None:
        if member.size > self.limits.max_file_bytes:
            return None
        source = tar.extractfile(member)
        if source is None:
            return None
        first = source.read(1 << 16)
        if not first.startswith(ELF_MAGIC):
            return None
        finder = gobuildinfo.BuildInfoFinder()
        finder.feed(first)
        while not finder.done and (chunk := source.read(1 << 20)):
            finder.feed(chunk)
        if finder.result is None:
            return None
        return entry(gobuildinfo.packages(finder.result, path))


def _moved(pkg: Package, location: str, layer: str) -> Package:
    from dataclasses import replace
    return replace(pkg, location=location, layer=pkg.layer or layer)


def _rpm_packages(spool: IO[bytes], path: str) -> list[Package]:
    out: list[Package] = []
    if path.endswith(".sqlite"):
        name = getattr(spool, "name", "")
        conn = sqlite3.connect(f"file:{name}?mode=ro&immutable=1", uri=True)
        try:
            blobs: Iterable[bytes] = [row[0] for row in conn.execute("SELECT blob FROM Packages")]
        finally:
            conn.close()
    else:
        with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as view:
            blobs = list(rpm.bdb_values(view))  # type: ignore[arg-type]
    for blob in blobs:
        try:
            pkg = rpm.package_of(bytes(blob), path)
        except rpm.RpmError:
            continue
        if pkg is not None:
            out.append(pkg)
    return out
