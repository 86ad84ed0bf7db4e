"""SBOM documents: CycloneDX 1.5 and SPDX 2.3 JSON from an inventory, and back (SBOMs as scan input).

Rendering is deterministic: the serial number and document namespace derive from the image
digest, the timestamp is the scan's completion time (passed in).
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

from packageurl import PackageURL

from cargohold import __version__
from cargohold.domain.inventory.packages import LANGUAGE_ECOSYSTEMS, Inventory, OsRelease, Package, finalize

CYCLONEDX_TYPES = ("application/vnd.cyclonedx+json",)
SPDX_TYPES = ("application/spdx+json",)
SBOM_MEDIA_TYPES = CYCLONEDX_TYPES + SPDX_TYPES
_PROP = "cargohold:"


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cyclonedx(inventory: Inventory, *, image: str, digest: str, created_ms: int) -> dict[str, Any]:
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"cargohold:{image}@{digest}")
    components = []
    if inventory.os is not None:
        components.append({"bom-ref": "os", "type": "operating-system", "name": inventory.os.id,
                           "version": inventory.os.version_id,
                           "description": inventory.os.pretty_name or inventory.os.name})
    for i, pkg in enumerate(inventory.packages):
        props = [{"name": f"{_PROP}{key}", "value": value} for key, value in (
            ("location", pkg.location), ("layer", pkg.layer), ("ecosystem", pkg.ecosystem),
            ("source_name", pkg.source_name), ("source_version", pkg.source_version)) if value]
        component: dict[str, Any] = {"bom-ref": f"pkg-{i}", "type": "library", "name": pkg.name,
                                     "version": pkg.version, "purl": pkg.purl}
        if props:
            component["properties"] = props
        components.append(component)
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "serialNumber": f"urn:uuid:{serial}", "version": 1,
        "metadata": {
            "timestamp": _iso(created_ms),
            "tools": {"components": [{"type": "application", "name": "cargohold", "version": __version__}]},
            "component": {"bom-ref": "image", "type": "container", "name": image, "version": digest},
        },
        "components": components,
    }


def spdx(inventory: Inventory, *, image: str, digest: str, created_ms: int) -> dict[str, Any]:
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"cargohold:{image}@{digest}")
    packages: list[dict[str, Any]] = [{
        "SPDXID": "SPDXRef-Image", "name": image, "versionInfo": digest, "downloadLocation": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER", "filesAnalyzed": False,
    }]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": "SPDXRef-Image"}]
    for i, pkg in enumerate(inventory.packages):
        ident = f"SPDXRef-Package-{i}"
        entry: dict[str, Any] = {
            "SPDXID": ident, "name": pkg.name, "versionInfo": pkg.version, "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False, "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER",
                                                      "referenceType": "purl", "referenceLocator": pkg.purl}],
        }
        if pkg.location:
            entry["sourceInfo"] = f"found in {pkg.location}"
        packages.append(entry)
        relationships.append({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                              "relatedSpdxElement": ident})
    return {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{image}@{digest}", "documentNamespace": f"https://cargohold.invalid/spdx/{namespace}",
        "creationInfo": {"created": _iso(created_ms), "creators": [f"Tool: cargohold-{__version__}"]},
        "packages": packages, "relationships": relationships,
    }


def render(fmt: str, inventory: Inventory, *, image: str, digest: str, created_ms: int) -> dict[str, Any]:
    if fmt == "spdx":
        return spdx(inventory, image=image, digest=digest, created_ms=created_ms)
    return cyclonedx(inventory, image=image, digest=digest, created_ms=created_ms)


# -- reading SBOMs ----------------------------------------------------------------------------------

_OS_FROM_DISTRO = {"debian": "debian", "ubuntu": "ubuntu", "alpine": "alpine"}


def package_from_purl(text: str, properties: dict[str, str] | None = None) -> Package | None:
    try:
        purl = PackageURL.from_string(text)
    except ValueError:
        return None
    props = properties or {}
    qualifiers: dict[str, str] = purl.qualifiers if isinstance(purl.qualifiers, dict) else {}
    version = purl.version or ""
    if not version:
        return None
    kind = purl.type
    name = purl.name
    if kind == "maven":
        name = f"{purl.namespace}:{purl.name}" if purl.namespace else purl.name
    elif kind in ("npm", "golang"):
        name = f"{purl.namespace}/{purl.name}" if purl.namespace else purl.name
    elif kind not in ("deb", "apk", "rpm", "pypi"):
        return None
    source_name, source_version = props.get("source_name", ""), props.get("source_version", "")
    upstream = qualifiers.get("upstream", "")
    if upstream and not source_name:
        source_name, _, source_version = upstream.partition("@")
    return Package(kind, name, version, source_name=source_name, source_version=source_version,
                   arch=qualifiers.get("arch", ""), epoch=qualifiers.get("epoch", ""),
                   location=props.get("location", ""), layer=props.get("layer", ""),
                   ecosystem=props.get("ecosystem", ""))


def _os_from_distro(purls: list[str]) -> OsRelease | None:
    for text in purls:
        try:
            purl = PackageURL.from_string(text)
        except ValueError:
            continue
        distro = (purl.qualifiers or {}).get("distro", "") if isinstance(purl.qualifiers, dict) else ""
        if purl.type in ("deb", "apk", "rpm") and distro:
            os_id, _, version = distro.partition("-")
            return OsRelease(id=os_id or (purl.namespace or ""), version_id=version)
    return None


def read_sbom(data: bytes) -> Inventory:
    """An inventory from a CycloneDX or SPDX JSON document (the packages its purls name)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the SBOM is not a JSON document") from None
    if not isinstance(doc, dict):
        raise ValueError("the SBOM is not a JSON object")
    packages: list[Package] = []
    purls: list[str] = []
    os_release: OsRelease | None = None
    if doc.get("bomFormat") == "CycloneDX":
        for comp in _walk_components(doc.get("components") or []):
            if comp.get("type") == "operating-system" and comp.get("name"):
                os_release = OsRelease(id=str(comp["name"]).lower(), version_id=str(comp.get("version", "")),
                                       pretty_name=str(comp.get("description", "")))
                continue
            purl = comp.get("purl")
            if not isinstance(purl, str):
                continue
            props = {str(p.get("name", ""))[len(_PROP):]: str(p.get("value", ""))
                     for p in comp.get("properties") or [] if str(p.get("name", "")).startswith(_PROP)}
            pkg = package_from_purl(purl, props)
            if pkg is not None:
                packages.append(pkg)
                purls.append(purl)
    elif str(doc.get("spdxVersion", "")).startswith("SPDX-"):
        for entry in doc.get("packages") or []:
            for ref in entry.get("externalRefs") or []:
                if ref.get("referenceType") == "purl" and isinstance(ref.get("referenceLocator"), str):
                    pkg = package_from_purl(ref["referenceLocator"])
                    if pkg is not None:
                        packages.append(pkg)
                        purls.append(ref["referenceLocator"])
    else:
        raise ValueError("not a CycloneDX or SPDX JSON document")
    if os_release is None:
        os_release = _os_from_distro(purls)
    return finalize(Inventory(os_release, packages))


def _walk_components(components: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for comp in components:
        if isinstance(comp, dict):
            out.append(comp)
            out += _walk_components(comp.get("components") or [])
    return out


__all__ = ["LANGUAGE_ECOSYSTEMS", "SBOM_MEDIA_TYPES", "cyclonedx", "read_sbom", "render", "spdx"]
