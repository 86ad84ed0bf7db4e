"""Where OSV records come from: directories of JSON files, all.zip archives, or URLs to those."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("cargohold.vulndb")
MAX_RECORD_BYTES = 16 << 20
MAX_DOWNLOAD_BYTES = 4 << 30


@dataclass(frozen=True)
class Source:
    path: Path  # a .json file, a .zip archive, or a directory holding them
    member_count: int


def _decode(data: bytes, where: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        log.warning("vulndb: %s is not JSON; skipped", where)
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
        log.warning("vulndb: %s is not an OSV record; skipped", where)
        return None
    return doc


def _zip_members(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return [i.filename for i in archive.infolist() if not i.is_dir() and i.filename.endswith(".json")]


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".zip"))


def count(paths: list[Path]) -> int:
    total = 0
    for root in paths:
        for path in _files(root):
            total += len(_zip_members(path)) if path.suffix == ".zip" else 1
    return total


def records(paths: list[Path]) -> Iterator[dict[str, Any] | None]:
    """Every OSV record under the given paths, in a stable order (None for unreadable ones)."""
    for root in paths:
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or directory")
        for path in _files(root):
            if path.suffix == ".zip":
                with zipfile.ZipFile(path) as archive:
                    for member in _zip_members(path):
                        info = archive.getinfo(member)
                        if info.file_size > MAX_RECORD_BYTES:
                            yield None
                            continue
                        yield _decode(archive.read(info), f"{path}!{member}")
            else:
                if path.stat().st_size > MAX_RECORD_BYTES:
                    yield None
                    continue
                yield _decode(path.read_bytes(), str(path))


def download(url: str, into: Path, timeout: float = 60.0, max_bytes: int = MAX_DOWNLOAD_BYTES) -> Path:
    """Fetch an archive (http, https or file URL) into a temporary file under `into`."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"unsupported URL scheme in {url!r}")
    into.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="download-", suffix=".zip", dir=into)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            copied = 0
            while chunk := resp.read(1 << 20):
                copied += len(chunk)
                if copied > max_bytes:
                    raise ValueError(f"{url}: larger than {max_bytes} bytes")
                out.write(chunk)
        if not zipfile.is_zipfile(name):
            raise ValueError(f"{url}: not a zip archive")
        return Path(name)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def cleanup(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
