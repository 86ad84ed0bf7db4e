"""OSV records: keys for lookup, and whether a package version is affected (OSV schema evaluation).

A record's `affected[]` entries name a package in an ecosystem; each has `versions` (an exact
list) and/or `ranges` of events (introduced / fixed / last_affected / limit). A version is
affected when it is listed exactly or lies in any ECOSYSTEM or SEMVER range; GIT ranges are
about commits and are ignored here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cargohold.domain.vulns.versions import base_ecosystem, parse_version

_PEP503 = re.compile(r"[-_.]+")
_UBUNTU_SUFFIX = re.compile(r":(?:LTS|ESM)$", re.IGNORECASE)


def normalize_ecosystem(ecosystem: str) -> str:
    """One spelling per ecosystem and release: "Ubuntu:22.04:LTS" -> "Ubuntu:22.04"."""
    ecosystem = ecosystem.strip()
    if ecosystem.startswith("Ubuntu:"):
        ecosystem = _UBUNTU_SUFFIX.sub("", ecosystem)
    return ecosystem


def normalize_name(ecosystem: str, name: str) -> str:
    base = base_ecosystem(ecosystem)
    if base == "PyPI":
        return _PEP503.sub("-", name).lower()
    if base in ("Debian", "Ubuntu", "Alpine"):
        return name.lower()
    return name


def lookup_keys(record: dict[str, Any]) -> set[tuple[str, str]]:
    """(ecosystem, name) pairs a record is indexed under."""
    keys: set[tuple[str, str]] = set()
    for entry in record.get("affected") or []:
        package = entry.get("package") or {}
        ecosystem, name = package.get("ecosystem"), package.get("name")
        if isinstance(ecosystem, str) and isinstance(name, str) and ecosystem and name:
            eco = normalize_ecosystem(ecosystem)
            keys.add((eco, normalize_name(eco, name)))
    return keys


@dataclass(frozen=True)
class Affected:
    """The verdict for one affected[] entry: the fix (if any) of the range that matched."""

    fixed: str | None
    last_affected: str | None = None


_RANK = {"introduced": 0, "last_affected": 1, "fixed": 2}


def _in_range(ecosystem: str, version: Any, events: list[dict[str, Any]]) -> Affected | None:
    """The OSV schema's evaluation: walk events in version order; the last one at or below wins."""
    ordered: list[tuple[tuple[Any, ...], str, str, Any]] = []
    limits = []
    for event in events:
        if not isinstance(event, dict) or len(event) != 1:
            continue
        kind, value = next(iter(event.items()))
        if not isinstance(value, str) or kind not in ("introduced", "fixed", "last_affected", "limit"):
            continue
        if kind == "limit":
            if value != "*":
                limit = parse_version(ecosystem, value)
                if limit is None:
                    return None
                limits.append(limit)
            continue
        if kind == "introduced" and value == "0":
            ordered.append(((0, None, _RANK[kind]), kind, value, None))
            continue
        parsed = parse_version(ecosystem, value)
        if parsed is None:
            return None  # an event we cannot place: do not guess
        # At equal versions: introduced, then last_affected, then fixed ("introduced 1.0, fixed 1.0" is empty).
        ordered.append(((1, parsed, _RANK[kind]), kind, value, parsed))
    if limits and not any(version < limit for limit in limits):
        return None
    ordered.sort(key=lambda item: item[0])
    affected = False
    for _key, kind, _value, parsed in ordered:
        if kind == "introduced":
            if parsed is None or version >= parsed:
                affected = True
        elif kind == "fixed":
            if version >= parsed:
                affected = False
        elif version > parsed:  # last_affected
            affected = False
    if not affected:
        return None
    fixes = [value for _k, kind, value, parsed in ordered if kind == "fixed" and parsed > version]
    lasts = [value for _k, kind, value, parsed in ordered if kind == "last_affected" and parsed >= version]
    return Affected(fixes[0] if fixes else None, lasts[0] if lasts else None)


def evaluate(entry: dict[str, Any], ecosystem: str, version: str) -> Affected | None:
    """Is `version` affected according to one affected[] entry (package already matched)?"""
    exact = entry.get("versions") or []
    parsed = parse_version(ecosystem, version)
    if version in exact:
        return Affected(None)
    if parsed is not None:
        for listed in exact:
            other = parse_version(ecosystem, str(listed))
            if other is not None and other == parsed:
                return Affected(None)
    if parsed is None:
        return None
    found: Affected | None = None
    for rng in entry.get("ranges") or []:
        kind = rng.get("type")
        if kind == "GIT":
            continue
        eco = "SEMVER" if kind == "SEMVER" else ecosystem
        version_in = parsed if kind != "SEMVER" else parse_version("SEMVER", version)
        if version_in is None:
            continue
        hit = _in_range(eco, version_in, rng.get("events") or [])
        if hit is not None and (found is None or (found.fixed is None and hit.fixed is not None)):
            found = hit
    return found
