"""Registry scanning configuration (ECR's PutRegistryScanningConfiguration) and what applies to a repository."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from typing import Any

from cargohold.errors import Kind, RegistryError


@dataclass(frozen=True)
class Rule:
    frequency: str  # SCAN_ON_PUSH | CONTINUOUS_SCAN
    filters: tuple[str, ...]  # WILDCARD filters

    def wire(self) -> dict[str, Any]:
        return {"scanFrequency": self.frequency,
                "repositoryFilters": [{"filter": f, "filterType": "WILDCARD"} for f in self.filters]}


@dataclass(frozen=True)
class RegistryScanning:
    scan_type: str = "BASIC"
    rules: tuple[Rule, ...] = ()

    def wire(self) -> dict[str, Any]:
        return {"scanType": self.scan_type, "rules": [r.wire() for r in self.rules]}

    def to_text(self) -> str:
        return json.dumps(self.wire(), sort_keys=True)

    @staticmethod
    def from_text(text: str | None) -> RegistryScanning:
        if not text:
            return RegistryScanning()
        return parse(json.loads(text))


@dataclass(frozen=True)
class RepositoryScanning:
    frequency: str  # SCAN_ON_PUSH | CONTINUOUS_SCAN | MANUAL
    scan_on_push: bool
    filters: list[str] = field(default_factory=list)

    @property
    def continuous(self) -> bool:
        return self.frequency == "CONTINUOUS_SCAN"


def _invalid(text: str) -> RegistryError:
    return RegistryError(Kind.INVALID_PARAMETER, f"Invalid parameter at 'rules' failed to satisfy constraint: '{text}'")


def parse(params: dict[str, Any]) -> RegistryScanning:
    scan_type = params.get("scanType") or "BASIC"
    rules = []
    for rule in params.get("rules") or []:
        frequency = rule.get("scanFrequency")
        if frequency not in ("SCAN_ON_PUSH", "CONTINUOUS_SCAN"):
            raise _invalid(f"scanFrequency {frequency} cannot be used in a registry scanning rule; use "
                           "SCAN_ON_PUSH or CONTINUOUS_SCAN")
        if frequency == "CONTINUOUS_SCAN" and scan_type != "ENHANCED":
            raise _invalid("CONTINUOUS_SCAN is only supported with the ENHANCED scan type")
        filters = [f.get("filter", "") for f in rule.get("repositoryFilters") or []]
        if not filters:
            raise _invalid("a rule needs at least one repository filter")
        if any(f.get("filterType", "WILDCARD") != "WILDCARD" for f in rule.get("repositoryFilters") or []):
            raise _invalid("filterType must be WILDCARD")
        rules.append(Rule(frequency, tuple(filters)))
    if len({r.frequency for r in rules}) != len(rules):
        raise _invalid("at most one rule per scan frequency")
    return RegistryScanning(scan_type, tuple(rules))


def filter_matches(pattern: str, name: str) -> bool:
    """ECR: a filter with a wildcard (*) matches like a glob; one without matches names containing it."""
    if "*" in pattern:
        return fnmatch.fnmatchcase(name, pattern.replace("[", "[[]").replace("?", "[?]"))
    return pattern in name


def applies(config: RegistryScanning, name: str, repo_scan_on_push: bool) -> RepositoryScanning:
    """What a repository gets: continuous beats scan on push beats manual (as ECR resolves overlaps)."""
    for frequency in ("CONTINUOUS_SCAN", "SCAN_ON_PUSH"):
        for rule in config.rules:
            if rule.frequency != frequency:
                continue
            matched = [f for f in rule.filters if filter_matches(f, name)]
            if matched:
                return RepositoryScanning(frequency, True, matched)
    if repo_scan_on_push:
        return RepositoryScanning("SCAN_ON_PUSH", True)
    return RepositoryScanning("MANUAL", False)
