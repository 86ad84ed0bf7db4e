"""Version comparison per ecosystem (univers), keyed by OSV ecosystem names.

An OSV ecosystem may carry a release suffix ("Debian:12", "Alpine:v3.19"); comparison only
depends on the base name. A version that does not parse is None: it never matches a range
(exact `versions` lists still compare as strings).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from univers import versions as uv

_RPM_ECOSYSTEMS = frozenset({
    "AlmaLinux", "Rocky Linux", "Red Hat", "openSUSE", "SUSE", "Mageia", "openEuler", "Azure Linux",
    "CBL-Mariner", "Amazon Linux", "Fedora", "CentOS", "Oracle Linux", "RPM",
})
_DEB_ECOSYSTEMS = frozenset({"Debian", "Ubuntu", "Echo"})

_CLASSES: dict[str, type[uv.Version]] = {
    "PyPI": uv.PypiVersion,
    "npm": uv.SemverVersion,
    "Maven": uv.MavenVersion,
    "Go": uv.GolangVersion,
    "Alpine": uv.AlpineLinuxVersion,
    "Wolfi": uv.AlpineLinuxVersion,
    "Chainguard": uv.AlpineLinuxVersion,
    "crates.io": uv.SemverVersion,
    "RubyGems": uv.RubygemsVersion,
    "NuGet": uv.NugetVersion,
    "Packagist": uv.ComposerVersion,
    "SEMVER": uv.SemverVersion,
}
_GO_PREFIX = re.compile(r"^(?:go|v)(?=\d)")
# apk's post-release suffixes univers does not know; each sorts after the bare version, as _p does.
_APK_POST = re.compile(r"_(?:cvs|svn|git|hg)(?=\d|-|$)")


def base_ecosystem(ecosystem: str) -> str:
    return ecosystem.split(":", 1)[0]


def version_class(ecosystem: str) -> type[uv.Version]:
    base = base_ecosystem(ecosystem)
    if base in _DEB_ECOSYSTEMS:
        return uv.DebianVersion
    if base in _RPM_ECOSYSTEMS:
        return uv.RpmVersion
    return _CLASSES.get(base, uv.GenericVersion)


def _clean(ecosystem: str, text: str) -> str:
    text = text.strip()
    base = base_ecosystem(ecosystem)
    if base in ("Go", "SEMVER", "npm", "crates.io"):
        text = _GO_PREFIX.sub("", text)
    elif base in ("Alpine", "Wolfi", "Chainguard"):
        text = _APK_POST.sub("_p", text)
    return text


@functools.lru_cache(maxsize=65536)
def parse_version(ecosystem: str, text: str) -> Any:
    """A comparable version, or None when it does not parse in that ecosystem."""
    if not text:
        return None
    try:
        return version_class(ecosystem)(_clean(ecosystem, text))
    except (uv.InvalidVersion, ValueError, TypeError, AttributeError, IndexError):
        return None


def compare(ecosystem: str, a: str, b: str) -> int | None:
    """-1, 0 or 1; None when either side does not parse."""
    va, vb = parse_version(ecosystem, a), parse_version(ecosystem, b)
    if va is None or vb is None:
        return None
    try:
        return -1 if va < vb else (1 if va > vb else 0)
    except (TypeError, ValueError):
        return None
