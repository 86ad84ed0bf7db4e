"""What an image contains: its OS release and packages, each named by a Package URL.

Parsers produce Packages without OS context; `finalize` gives OS packages their ecosystem
("Debian:12", "Alpine:v3.19", ...) and purl qualifiers once the image's os-release is known.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from packageurl import PackageURL

# Package types (purl types) and the OSV ecosystem a language package belongs to.
LANGUAGE_ECOSYSTEMS = {"pypi": "PyPI", "npm": "npm", "maven": "Maven", "golang": "Go"}
OS_TYPES = ("deb", "apk", "rpm")

# os-release ID -> OSV ecosystem base name (RPM distributions as OSV spells them).
_OS_ECOSYSTEMS = {
    "debian": "Debian", "ubuntu": "Ubuntu", "alpine": "Alpine", "rocky": "Rocky Linux",
    "almalinux": "AlmaLinux", "rhel": "Red Hat", "opensuse-leap": "openSUSE", "sles": "SUSE",
    "mageia": "Mageia", "openeuler": "openEuler", "wolfi": "Wolfi", "chainguard": "Chainguard",
    "azurelinux": "Azure Linux", "mariner": "CBL-Mariner", "amzn": "Amazon Linux", "centos": "CentOS",
    "ol": "Oracle Linux", "fedora": "Fedora",
}


@dataclass(frozen=True)
class OsRelease:
    id: str = ""
    version_id: str = ""
    name: str = ""
    pretty_name: str = ""
    version_codename: str = ""
    id_like: str = ""

    @property
    def ecosystem(self) -> str | None:
        """The OSV ecosystem key of this release, e.g. Debian:12, Ubuntu:22.04, Alpine:v3.19."""
        base = _OS_ECOSYSTEMS.get(self.id)
        if base is None:
            for like in self.id_like.split():
                if like in ("debian", "ubuntu", "rhel", "fedora", "centos"):
                    base = _OS_ECOSYSTEMS.get("rhel" if like in ("fedora", "centos") else like)
                    break
        if base is None:
            return None
        version = self.version_id
        if base == "Alpine" and version:
            major_minor = ".".join(version.split(".")[:2])
            return f"Alpine:v{major_minor}"
        if base in ("Debian", "Rocky Linux", "AlmaLinux", "Red Hat", "CentOS", "Oracle Linux") and version:
            return f"{base}:{version.split('.')[0]}"
        if base in ("Wolfi", "Chainguard"):
            return base
        return f"{base}:{version}" if version else base

    @property
    def distro(self) -> str:
        """The purl `distro` qualifier, e.g. debian-12, alpine-3.19.1."""
        return f"{self.id}-{self.version_id}" if self.version_id else self.id


@dataclass(frozen=True)
class Package:
    type: str  # purl type: deb, apk, rpm, pypi, npm, maven, golang
    name: str  # for maven: group:artifact; for golang: the module path
    version: str
    source_name: str = ""  # deb Source, apk origin, rpm source package
    source_version: str = ""
    arch: str = ""
    epoch: str = ""  # rpm
    location: str = ""  # path inside the image where it was found
    layer: str = ""  # digest of the layer that put it there
    ecosystem: str = ""  # OSV ecosystem key (set for OS packages by finalize)
    purl: str = ""

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Package:
        known = {f for f in Package.__dataclass_fields__}
        return Package(**{k: str(v) for k, v in doc.items() if k in known})

    def match_keys(self) -> list[tuple[str, str]]:
        """(name, version) pairs looked up in the vulnerability database, best first.

        Debian and Ubuntu advisories name source packages, Alpine's name the origin; RPM ones
        usually name binary packages, so both are tried.
        """
        if self.type in ("deb", "apk"):
            return [(self.source_name or self.name, self.source_version or self.version)]
        if self.type == "rpm":
            keys = [(self.name, self.full_version)]
            if self.source_name and self.source_name != self.name:
                keys.append((self.source_name, self.full_version))
            return keys
        return [(self.name, self.version)]

    @property
    def full_version(self) -> str:
        return f"{self.epoch}:{self.version}" if self.epoch and self.epoch != "0" else self.version


@dataclass
class Inventory:
    os: OsRelease | None = None
    packages: list[Package] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things skipped (too big, unreadable), for the record

    def to_json(self) -> dict[str, Any]:
        return {"os": asdict(self.os) if self.os else None, "packages": [p.to_json() for p in self.packages],
                "notes": self.notes}

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Inventory:
        os_doc = doc.get("os")
        return Inventory(OsRelease(**os_doc) if isinstance(os_doc, dict) else None,
                         [Package.from_json(p) for p in doc.get("packages") or []], list(doc.get("notes") or []))


def _purl(pkg: Package, os: OsRelease | None) -> str:
    qualifiers: dict[str, str] = {}
    namespace: str | None = None
    name = pkg.name
    if pkg.type in OS_TYPES:
        namespace = (os.id if os and os.id else {"deb": "debian", "apk": "alpine", "rpm": "redhat"}[pkg.type])
        if pkg.arch:
            qualifiers["arch"] = pkg.arch
        if os and os.id:
            qualifiers["distro"] = os.distro
        if pkg.epoch and pkg.epoch != "0":
            qualifiers["epoch"] = pkg.epoch
        if pkg.source_name and (pkg.source_name != pkg.name or (pkg.source_version or pkg.version) != pkg.version):
            upstream = pkg.source_name + (f"@{pkg.source_version}" if pkg.source_version else "")
            qualifiers["upstream"] = upstream
    elif pkg.type == "maven":
        namespace, _, name = pkg.name.rpartition(":")
    elif pkg.type in ("npm", "golang") and "/" in pkg.name:
        namespace, _, name = pkg.name.rpartition("/")
    elif pkg.type == "pypi":
        name = pkg.name.lower().replace("_", "-")
    return str(PackageURL(type=pkg.type, namespace=namespace or None, name=name, version=pkg.version or None,
                          qualifiers=qualifiers or None).to_string())


def finalize(inventory: Inventory) -> Inventory:
    """Ecosystems and purls for every package; duplicates (same purl, same place) dropped."""
    os_ecosystem = inventory.os.ecosystem if inventory.os else None
    out: list[Package] = []
    seen: set[tuple[str, str]] = set()
    for pkg in inventory.packages:
        ecosystem = (os_ecosystem or "") if pkg.type in OS_TYPES else LANGUAGE_ECOSYSTEMS.get(pkg.type, "")
        done = replace(pkg, ecosystem=ecosystem)
        done = replace(done, purl=_purl(done, inventory.os))
        key = (done.purl, done.location)
        if key not in seen:
            seen.add(key)
            out.append(done)
    out.sort(key=lambda p: (p.type, p.name, p.version, p.location))
    return Inventory(inventory.os, out, inventory.notes)
