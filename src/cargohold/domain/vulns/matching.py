"""Findings: an inventory's packages matched against OSV records, in ECR's terms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cargohold.domain.inventory.packages import Inventory, Package
from cargohold.domain.vulns.osv import evaluate, normalize_ecosystem, normalize_name
from cargohold.domain.vulns.severity import RANK, SEVERITIES, assess
from cargohold.domain.vulns.versions import base_ecosystem

Lookup = Callable[[str, str], list[dict[str, Any]]]
MAX_DESCRIPTION = 2000


@dataclass
class Finding:
    name: str
    description: str
    uri: str
    severity: str
    attributes: list[tuple[str, str]] = field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "severity": self.severity,
                               "attributes": [{"key": k, "value": v[:256]} for k, v in self.attributes if v]}
        if self.description:
            out["description"] = self.description
        if self.uri:
            out["uri"] = self.uri
        return out


def finding_name(record: dict[str, Any]) -> str:
    ident = str(record.get("id", ""))
    if ident.startswith("CVE-"):
        return ident
    for field_name in ("aliases", "upstream"):
        cves = sorted(a for a in record.get(field_name) or [] if isinstance(a, str) and a.startswith("CVE-"))
        if cves:
            return cves[0]
    return ident


def _uri(record: dict[str, Any]) -> str:
    refs = [r for r in record.get("references") or [] if isinstance(r, dict) and isinstance(r.get("url"), str)]
    for wanted in ("ADVISORY", "WEB"):
        for ref in refs:
            if ref.get("type") == wanted:
                return str(ref["url"])
    return str(refs[0]["url"]) if refs else f"https://osv.dev/vulnerability/{record.get('id', '')}"


def _entry_applies(entry: dict[str, Any], ecosystem: str, name: str) -> bool:
    package = entry.get("package") or {}
    eco = normalize_ecosystem(str(package.get("ecosystem", "")))
    if eco != ecosystem and eco != base_ecosystem(ecosystem):
        return False
    return normalize_name(eco, str(package.get("name", ""))) == normalize_name(eco, name)


def match(inventory: Inventory, lookup: Lookup) -> list[Finding]:
    """One finding per (vulnerability, package name, version); the worst severity wins on duplicates."""
    found: dict[tuple[str, str, str], tuple[Finding, set[str]]] = {}
    for pkg in inventory.packages:
        if not pkg.ecosystem:
            continue
        for name, version in pkg.match_keys():
            for record in lookup(pkg.ecosystem, normalize_name(pkg.ecosystem, name)):
                if record.get("withdrawn"):
                    continue
                for entry in record.get("affected") or []:
                    if not isinstance(entry, dict) or not _entry_applies(entry, pkg.ecosystem, name):
                        continue
                    verdict = evaluate(entry, pkg.ecosystem, version)
                    if verdict is None:
                        continue
                    _add(found, record, entry, pkg, name, version, verdict.fixed, verdict.last_affected)
                    break
    findings = []
    for finding, binaries in found.values():
        if binaries:
            finding.attributes.insert(2, ("binary_packages", ",".join(sorted(binaries))))
        findings.append(finding)
    findings.sort(key=lambda f: (RANK[f.severity], f.name, dict(f.attributes).get("package_name", "")))
    return findings


def _add(found: dict[tuple[str, str, str], tuple[Finding, set[str]]], record: dict[str, Any],
         entry: dict[str, Any], pkg: Package, name: str, version: str, fixed: str | None,
         last_affected: str | None) -> None:
    severity = assess(record, entry)
    vuln_name = finding_name(record)
    key = (vuln_name, name, version)
    attributes = [("package_name", name), ("package_version", version)]
    if fixed:
        attributes.append(("fixed_version", fixed))
    elif last_affected:
        attributes.append(("last_affected_version", last_affected))
    attributes.append(("package_ecosystem", pkg.ecosystem))
    if record.get("id") and record["id"] != vuln_name:
        attributes.append(("vulnerability_id", str(record["id"])))
    attributes += sorted(severity.attributes.items())
    description = str(record.get("summary") or record.get("details") or "")[:MAX_DESCRIPTION]
    finding = Finding(vuln_name, description, _uri(record), severity.level, attributes)
    binaries = {pkg.name} if pkg.name != name else set()
    existing = found.get(key)
    if existing is None:
        found[key] = (finding, binaries)
        return
    old, old_binaries = existing
    old_binaries |= binaries
    better = RANK[finding.severity] < RANK[old.severity]
    if better or (not dict(old.attributes).get("fixed_version") and dict(finding.attributes).get("fixed_version")
                  and RANK[finding.severity] <= RANK[old.severity]):
        found[key] = (finding, old_binaries)


def severity_counts(findings: list[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    return {s: counts[s] for s in SEVERITIES if s in counts}
