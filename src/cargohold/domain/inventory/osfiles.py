"""OS metadata files: os-release, dpkg's status database, Alpine's apk database."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

from cargohold.domain.inventory.packages import OsRelease, Package

_SOURCE = re.compile(r"^(?P<name>\S+)(?:\s+\((?P<version>[^)]+)\))?$")


def parse_os_release(text: str) -> OsRelease:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = [raw.strip("\"'")]
        values[key.strip()] = parts[0] if parts else ""
    return OsRelease(id=values.get("ID", "").lower(), version_id=values.get("VERSION_ID", ""),
                     name=values.get("NAME", ""), pretty_name=values.get("PRETTY_NAME", ""),
                     version_codename=values.get("VERSION_CODENAME", ""), id_like=values.get("ID_LIKE", "").lower())


def _paragraphs(text: str) -> Iterator[dict[str, str]]:
    """RFC 822-style stanzas separated by blank lines; continuation lines are folded away."""
    fields: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, ""
            continue
        if line[0] in " \t":
            if last:
                fields[last] += "\n" + line.strip()
            continue
        key, sep, value = line.partition(":")
        if sep:
            last = key.strip()
            fields[last] = value.strip()
    if fields:
        yield fields


def parse_dpkg_status(text: str, location: str, *, require_installed: bool = True) -> list[Package]:
    """Packages of a dpkg status file (or a distroless status.d entry, which has no Status field)."""
    out = []
    for para in _paragraphs(text):
        name, version = para.get("Package"), para.get("Version")
        if not name or not version:
            continue
        status = para.get("Status")
        if status is not None and not status.endswith(" installed"):
            continue
        if status is None and require_installed:
            continue
        source_name, source_version = name, version
        source = para.get("Source")
        if source:
            m = _SOURCE.match(source.strip())
            if m:
                source_name = m["name"]
                source_version = m["version"] or version
        out.append(Package("deb", name, version, source_name=source_name, source_version=source_version,
                           arch=para.get("Architecture", ""), location=location))
    return out


def parse_apk_installed(text: str, location: str) -> list[Package]:
    out = []
    record: dict[str, str] = {}

    def flush() -> None:
        if record.get("P") and record.get("V"):
            out.append(Package("apk", record["P"], record["V"], source_name=record.get("o", record["P"]),
                               source_version=record["V"], arch=record.get("A", ""), location=location))

    for line in text.splitlines():
        if not line.strip():
            flush()
            record = {}
            continue
        key, sep, value = line.partition(":")
        if sep and len(key) == 1:
            record.setdefault(key, value)
    flush()
    return out
