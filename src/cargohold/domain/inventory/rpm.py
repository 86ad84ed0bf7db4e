"""RPM databases: header blobs (as rpmdb.sqlite and BerkeleyDB "Packages" store them).

A header blob is: index entry count and data length (big-endian int32 each), then 16-byte
index entries (tag, type, offset, count), then the data store. Only the few tags needed for
an inventory are read. The BerkeleyDB reader walks hash pages and their overflow chains, as
rpm's own bdb_ro backend does, without any BerkeleyDB library.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from cargohold.domain.inventory.packages import Package

NAME, VERSION, RELEASE, EPOCH, ARCH, SOURCERPM = 1000, 1001, 1002, 1003, 1022, 1044
_STRING, _INT32, _STRING_ARRAY, _I18NSTRING = 6, 4, 8, 9
_MAX_ENTRIES = 1 << 16


class RpmError(ValueError):
    pass


def parse_header(blob: bytes) -> dict[int, str | int]:
    if len(blob) < 8:
        raise RpmError("header blob too short")
    count, length = struct.unpack(">ii", blob[:8])
    if not (0 < count < _MAX_ENTRIES) or length < 0 or 8 + count * 16 + length > len(blob):
        raise RpmError("malformed header blob")
    data = blob[8 + count * 16: 8 + count * 16 + length]
    wanted = {NAME, VERSION, RELEASE, EPOCH, ARCH, SOURCERPM}
    out: dict[int, str | int] = {}
    for i in range(count):
        tag, kind, offset, n = struct.unpack(">iiii", blob[8 + i * 16: 24 + i * 16])
        if tag not in wanted or not (0 <= offset < len(data)):
            continue
        if kind in (_STRING, _I18NSTRING, _STRING_ARRAY):
            end = data.find(b"\0", offset)
            out[tag] = data[offset:end if end >= 0 else len(data)].decode("utf-8", "replace")
        elif kind == _INT32 and n >= 1 and offset + 4 <= len(data):
            out[tag] = struct.unpack(">i", data[offset:offset + 4])[0]
    return out


def source_name(source_rpm: str) -> str:
    base = source_rpm.removesuffix(".rpm").removesuffix(".src").removesuffix(".nosrc")
    parts = base.rsplit("-", 2)
    return parts[0] if len(parts) == 3 else ""


def package_of(blob: bytes, location: str) -> Package | None:
    tags = parse_header(blob)
    name, version, release = tags.get(NAME), tags.get(VERSION), tags.get(RELEASE)
    if not isinstance(name, str) or not isinstance(version, str) or name == "gpg-pubkey":
        return None
    full = f"{version}-{release}" if isinstance(release, str) and release else version
    epoch = tags.get(EPOCH)
    source = tags.get(SOURCERPM)
    return Package("rpm", name, full, source_name=source_name(source) if isinstance(source, str) else "",
                   arch=str(tags.get(ARCH, "")), epoch=str(epoch) if isinstance(epoch, int) else "",
                   location=location)


def build_header(name: str, version: str, release: str, *, epoch: int | None = None, arch: str = "x86_64",
                 source_rpm: str = "") -> bytes:
    """A minimal header blob (tests and examples)."""
    entries: list[tuple[int, int, bytes]] = [(NAME, _STRING, name.encode() + b"\0"),
                                             (VERSION, _STRING, version.encode() + b"\0"),
                                             (RELEASE, _STRING, release.encode() + b"\0"),
                                             (ARCH, _STRING, arch.encode() + b"\0")]
    if epoch is not None:
        entries.append((EPOCH, _INT32, struct.pack(">i", epoch)))
    if source_rpm:
        entries.append((SOURCERPM, _STRING, source_rpm.encode() + b"\0"))
    index, data = b"", b""
    for tag, kind, value in entries:
        if kind == _INT32:
            data += bytes(-len(data) % 4)
        index += struct.pack(">iiii", tag, kind, len(data), 1)
        data += value
    return struct.pack(">ii", len(entries), len(data)) + index + data


# -- BerkeleyDB hash databases (var/lib/rpm/Packages) ---------------------------------------------

_HASH_MAGIC = 0x061561
_P_HASH_UNSORTED, _P_OVERFLOW, _P_HASH = 2, 7, 13
_H_KEYDATA, _H_OFFPAGE = 1, 3
_PAGE_HEADER = 26


def bdb_values(db: bytes) -> Iterator[bytes]:
    """Every data item of a BerkeleyDB hash database, overflow chains followed."""
    if len(db) < 512:
        raise RpmError("not a BerkeleyDB file")
    for endian in ("<", ">"):
        if struct.unpack(endian + "I", db[12:16])[0] == _HASH_MAGIC:
            break
    else:
        raise RpmError("not a BerkeleyDB hash database")
    page_size = struct.unpack(endian + "I", db[20:24])[0]
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise RpmError("implausible BerkeleyDB page size")
    pages = len(db) // page_size

    def page(n: int) -> bytes:
        return db[n * page_size:(n + 1) * page_size]

    def overflow(start: int, total: int) -> bytes:
        out = bytearray()
        n, seen = start, set()
        while n and n < pages and n not in seen and len(out) < total:
            seen.add(n)
            p = page(n)
            if p[25] != _P_OVERFLOW:
                raise RpmError("broken overflow chain")
            used = struct.unpack(endian + "H", p[22:24])[0]
            out += p[_PAGE_HEADER:_PAGE_HEADER + used]
            n = struct.unpack(endian + "I", p[16:20])[0]
        return bytes(out[:total])

    for n in range(1, pages):
        p = page(n)
        if p[25] not in (_P_HASH, _P_HASH_UNSORTED):
            continue
        entries = struct.unpack(endian + "H", p[20:22])[0]
        offsets = [struct.unpack(endian + "H", p[_PAGE_HEADER + 2 * i:_PAGE_HEADER + 2 * i + 2])[0]
                   for i in range(min(entries, (page_size - _PAGE_HEADER) // 2))]
        for i in range(1, len(offsets), 2):  # items alternate key, data
            start = offsets[i]
            end = offsets[i - 1] if i > 0 else page_size  # items are laid out from the page end downwards
            if not (0 < start < page_size):
                continue
            kind = p[start]
            if kind == _H_OFFPAGE:
                pgno, total = struct.unpack(endian + "II", p[start + 4:start + 12])
                yield overflow(pgno, total)
            elif kind == _H_KEYDATA and start < end:
                yield p[start + 1:end]


def build_bdb(values: list[bytes], page_size: int = 4096) -> bytes:
    """A little-endian BerkeleyDB hash file holding values as overflow items (tests and examples)."""
    meta = bytearray(page_size)
    struct.pack_into("<I", meta, 12, _HASH_MAGIC)
    struct.pack_into("<I", meta, 16, 9)
    struct.pack_into("<I", meta, 20, page_size)
    meta[25] = 8
    pages: list[bytearray] = [meta]
    hash_page = bytearray(page_size)
    pages.append(hash_page)
    hash_page[25] = _P_HASH
    items: list[bytes] = []
    for i, value in enumerate(values):
        key = bytes([_H_KEYDATA]) + struct.pack("<I", i + 1)
        chunk = page_size - _PAGE_HEADER
        first = len(pages)
        for k in range(0, len(value), chunk):
            ov = bytearray(page_size)
            ov[25] = _P_OVERFLOW
            part = value[k:k + chunk]
            struct.pack_into("<H", ov, 22, len(part))
            nxt = len(pages) + 1 if k + chunk < len(value) else 0
            struct.pack_into("<I", ov, 16, nxt)
            ov[_PAGE_HEADER:_PAGE_HEADER + len(part)] = part
            pages.append(ov)
        items += [key, bytes([_H_OFFPAGE, 0, 0, 0]) + struct.pack("<II", first, len(value))]
    offset = page_size
    for j, item in enumerate(items):
        offset -= len(item)
        hash_page[offset:offset + len(item)] = item
        struct.pack_into("<H", hash_page, _PAGE_HEADER + 2 * j, offset)
    struct.pack_into("<H", hash_page, 20, len(items))
    return b"".join(bytes(p) for p in pages)
