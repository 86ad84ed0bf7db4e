"""OSV range evaluation per ecosystem (univers comparisons) and CVSS-based severity."""

from __future__ import annotations

from typing import Any

import pytest

from cargohold.domain.vulns.osv import evaluate, lookup_keys, normalize_ecosystem
from cargohold.domain.vulns.severity import assess, from_score
from cargohold.domain.vulns.versions import compare


def entry(*ranges: list[dict[str, str]], kind: str = "ECOSYSTEM", versions: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ranges": [{"type": kind, "events": r} for r in ranges]}
    if versions is not None:
        out["versions"] = versions
    return out


@pytest.mark.parametrize(("ecosystem", "a", "b", "expected"), [
    ("Debian:12", "1:1.0-1", "2.0-1", 1),  # an epoch wins
    ("Debian:12", "1.0~rc1-1", "1.0-1", -1),  # tilde sorts before anything
    ("Debian:12", "5.2.15-2+b2", "5.2.15-2", 1),
    ("Ubuntu:22.04", "1.2-1ubuntu0.1", "1.2-1", 1),
    ("Alpine:v3.19", "1.2.3-r10", "1.2.3-r9", 1),
    ("Alpine:v3.19", "1.2.4_git20230717-r4", "1.2.4-r4", 1),  # apk: _git is a post-release suffix
    ("Rocky Linux:9", "1:3.0.7-24.el9", "3.0.9-1.el9", 1),
    ("Rocky Linux:9", "3.0.7-24.el9", "3.0.7-24.el9_3", -1),
    ("PyPI", "2.0rc1", "2.0", -1),
    ("PyPI", "1.0", "1.0.0", 0),
    ("npm", "1.2.3-beta.1", "1.2.3", -1),
    ("Maven", "2.0-beta9", "2.0", -1),
    ("Maven", "1.0-SNAPSHOT", "1.0", -1),
    ("Go", "v0.3.5", "0.3.7", -1),
    ("Go", "go1.20.1", "1.20.2", -1),
])
def test_compare(ecosystem: str, a: str, b: str, expected: int) -> None:
    assert compare(ecosystem, a, b) == expected


def test_introduced_fixed() -> None:
    e = entry([{"introduced": "1.0"}, {"fixed": "1.5"}])
    assert evaluate(e, "PyPI", "0.9") is None
    hit = evaluate(e, "PyPI", "1.0")
    assert hit is not None and hit.fixed == "1.5"
    assert evaluate(e, "PyPI", "1.4.9") is not None
    assert evaluate(e, "PyPI", "1.5") is None
    assert evaluate(e, "PyPI", "2.0") is None


def test_several_ranges_and_several_events() -> None:
    e = entry([{"introduced": "0"}, {"fixed": "1.26.5"}], [{"introduced": "2.0.0"}, {"fixed": "2.0.3"}])
    assert evaluate(e, "PyPI", "1.26.4").fixed == "1.26.5"  # type: ignore[union-attr]
    assert evaluate(e, "PyPI", "1.26.5") is None
    assert evaluate(e, "PyPI", "2.0.1").fixed == "2.0.3"  # type: ignore[union-attr]
    assert evaluate(e, "PyPI", "2.0.3") is None
    # One range with two introduced/fixed pairs, events out of order.
    one = entry([{"fixed": "2.0.3"}, {"introduced": "2.0.0"}, {"introduced": "0"}, {"fixed": "1.26.5"}])
    assert evaluate(one, "PyPI", "1.0") is not None
    assert evaluate(one, "PyPI", "1.27") is None
    assert evaluate(one, "PyPI", "2.0.2") is not None


def test_last_affected_is_inclusive() -> None:
    e = entry([{"introduced": "2.9.0"}, {"last_affected": "2.9.14+dfsg-1.3"}])
    hit = evaluate(e, "Debian:12", "2.9.14+dfsg-1.3")
    assert hit is not None and hit.fixed is None and hit.last_affected == "2.9.14+dfsg-1.3"
    assert evaluate(e, "Debian:12", "2.9.14+dfsg-1.4") is None
    assert evaluate(e, "Debian:12", "2.8") is None


def test_exact_versions_and_unfixed() -> None:
    e = entry(versions=["2.9.9", "2.9.10"])
    assert evaluate(e, "Maven", "2.9.10") is not None
    assert evaluate(e, "Maven", "2.9.11") is None
    assert evaluate({"versions": ["1.0"]}, "PyPI", "1.0.0") is not None  # equal once parsed
    unfixed = entry([{"introduced": "0"}])
    hit = evaluate(unfixed, "Debian:12", "252.22-1~deb12u1")
    assert hit is not None and hit.fixed is None


def test_epochs() -> None:
    assert evaluate(entry([{"introduced": "0"}, {"fixed": "2.5-1"}]), "Debian:12", "1:2.0-1") is None
    assert evaluate(entry([{"introduced": "0"}, {"fixed": "1:1.2.13.dfsg-2"}]), "Debian:12", "1:1.2.13.dfsg-1")
    assert evaluate(entry([{"introduced": "0"}, {"fixed": "1:3.0.7-25.el9_3"}]), "Rocky Linux:9", "1:3.0.7-24.el9")
    assert evaluate(entry([{"introduced": "0"}, {"fixed": "3.0.8-1.el9"}]), "Rocky Linux:9", "1:3.0.7-24.el9") is None


def test_installed_newer_than_fix() -> None:
    e = entry([{"introduced": "0"}, {"fixed": "7.88.1-10+deb12u4"}])
    assert evaluate(e, "Debian:12", "7.88.1-10+deb12u5") is None
    assert evaluate(e, "Debian:12", "7.88.1-10+deb12u3") is not None


def test_limit_and_semver_ranges() -> None:
    limited = {"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"limit": "2.0"}]}]}
    assert evaluate(limited, "PyPI", "1.9") is not None
    assert evaluate(limited, "PyPI", "2.1") is None
    semver = entry([{"introduced": "0"}, {"fixed": "4.17.21"}], kind="SEMVER")
    assert evaluate(semver, "npm", "4.17.20") is not None
    assert evaluate(semver, "npm", "v4.17.21") is None
    git = entry([{"introduced": "abc"}, {"fixed": "def"}], kind="GIT")
    assert evaluate(git, "PyPI", "1.0") is None


def test_unparsable_versions_do_not_match() -> None:
    assert evaluate(entry([{"introduced": "0"}, {"fixed": "1.0"}]), "Alpine:v3.19", "not a version!") is None
    assert evaluate(entry([{"introduced": "garbage!"}]), "Alpine:v3.19", "1.0-r0") is None


def test_lookup_keys_normalize() -> None:
    record = {"affected": [{"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "openssl"}},
                           {"package": {"ecosystem": "PyPI", "name": "Foo_Bar.baz"}}]}
    assert lookup_keys(record) == {("Ubuntu:22.04", "openssl"), ("PyPI", "foo-bar-baz")}
    assert normalize_ecosystem("Alpine:v3.19") == "Alpine:v3.19"


@pytest.mark.parametrize(("record", "level"), [
    ({"severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}, "CRITICAL"),
    ({"severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}]}, "HIGH"),
    ({"severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:N"}]}, "MEDIUM"),
    ({"severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"}]}, "LOW"),
    ({"severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"}]}, "INFORMATIONAL"),
    ({"severity": [{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:C/I:C/A:C"}]}, "HIGH"),  # v2 has no CRITICAL
    ({"severity": [{"type": "CVSS_V4",
                    "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}]}, "CRITICAL"),
    ({"severity": [{"type": "CVSS_V3", "score": "not a vector"}], "database_specific": {"severity": "MODERATE"}},
     "MEDIUM"),
    ({"database_specific": {"severity": "HIGH"}}, "HIGH"),
    ({"database_specific": {"urgency": "unimportant"}}, "INFORMATIONAL"),
    ({"ecosystem_specific": {"severity": "Low"}}, "LOW"),
    ({"severity": [{"type": "Ubuntu", "score": "medium"}]}, "MEDIUM"),
    ({}, "UNDEFINED"),
    ({"database_specific": {"severity": "weird"}}, "UNDEFINED"),
])
def test_severity(record: dict[str, Any], level: str) -> None:
    assert assess(record).level == level


def test_severity_prefers_v4_then_v3_and_reports_scores() -> None:
    record = {"severity": [{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"},
                           {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}
    result = assess(record)
    assert result.level == "CRITICAL"
    assert result.attributes["CVSS3_SCORE"] == "9.8" and result.attributes["CVSS2_SCORE"] == "7.5"
    assert from_score(9.0, 3) == "CRITICAL" and from_score(10.0, 2) == "HIGH"
