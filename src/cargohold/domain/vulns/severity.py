"""Severity of an OSV record in ECR's terms, from CVSS vectors or the database's own rating.

Order of preference: CVSS v4, v3.x, v2 vectors (scored with the `cvss` library), then a
textual severity in database_specific / ecosystem_specific. ECR's levels are CRITICAL, HIGH,
MEDIUM, LOW, INFORMATIONAL and UNDEFINED (nothing usable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cvss import CVSS2, CVSS3, CVSS4

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
RANK = {name: i for i, name in enumerate(SEVERITIES)}

_WORDS = {
    "critical": "CRITICAL",
    "high": "HIGH", "important": "HIGH",
    "moderate": "MEDIUM", "medium": "MEDIUM",
    "low": "LOW", "negligible": "LOW",
    "unimportant": "INFORMATIONAL", "informational": "INFORMATIONAL", "info": "INFORMATIONAL", "none": "INFORMATIONAL",
}


@dataclass(frozen=True)
class Severity:
    level: str  # one of SEVERITIES
    attributes: dict[str, str] = field(default_factory=dict)  # CVSS3_SCORE, CVSS3_VECTOR, ...


def from_score(score: float, version: int) -> str:
    """NVD's qualitative ratings (v2 has no CRITICAL and no NONE)."""
    if version == 2:
        return "HIGH" if score >= 7.0 else "MEDIUM" if score >= 4.0 else "LOW"
    if score >= 9.0:
        return "CRITICAL"
    if score >= 7.0:
        return "HIGH"
    if score >= 4.0:
        return "MEDIUM"
    if score > 0.0:
        return "LOW"
    return "INFORMATIONAL"


def score_vector(kind: str, vector: str) -> tuple[int, float] | None:
    """(CVSS major version, base score) of a vector, or None if it does not parse."""
    try:
        if kind == "CVSS_V4" or vector.startswith("CVSS:4"):
            return 4, float(CVSS4(vector).base_score)
        if kind == "CVSS_V3" or vector.startswith("CVSS:3"):
            return 3, float(CVSS3(vector).scores()[0])
        if kind == "CVSS_V2":
            return 2, float(CVSS2(vector.removeprefix("CVSS:2.0/")).scores()[0])
    except Exception:  # the cvss library raises several exception types for bad vectors
        return None
    return None


def _text_level(value: Any) -> str | None:
    if isinstance(value, str):
        return _WORDS.get(value.strip().lower())
    return None


def assess(record: dict[str, Any], entry: dict[str, Any] | None = None) -> Severity:
    """The severity of a record (an affected[] entry's own severity, when given, comes first)."""
    scored: dict[int, tuple[float, str]] = {}
    for source in ((entry or {}).get("severity") or [], record.get("severity") or []):
        for item in source:
            if not isinstance(item, dict) or not isinstance(item.get("score"), str):
                continue
            result = score_vector(str(item.get("type", "")), item["score"])
            if result is not None and result[0] not in scored:
                scored[result[0]] = (result[1], item["score"])
    attributes: dict[str, str] = {}
    for version, (score, vector) in scored.items():
        attributes[f"CVSS{version}_SCORE"] = f"{score:.1f}"
        attributes[f"CVSS{version}_VECTOR"] = vector[:256]
    for version in (4, 3, 2):
        if version in scored:
            return Severity(from_score(scored[version][0], version), attributes)
    for holder in (entry or {}, record):
        for section in ("database_specific", "ecosystem_specific"):
            specific = holder.get(section)
            if isinstance(specific, dict):
                for key in ("severity", "urgency", "cvss_severity"):
                    level = _text_level(specific.get(key))
                    if level:
                        return Severity(level, attributes)
    for item in record.get("severity") or []:  # e.g. {"type": "Ubuntu", "score": "medium"}
        if isinstance(item, dict):
            level = _text_level(item.get("score"))
            if level:
                return Severity(level, attributes)
    return Severity("UNDEFINED", attributes)
