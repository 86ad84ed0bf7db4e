"""Language package metadata: Python dist-info / egg-info, npm package.json, Maven pom.properties."""

from __future__ import annotations

import json
import re
from email.parser import HeaderParser

from cargohold.domain.inventory.packages import Package

_DIST_INFO = re.compile(r"(?:^|/)[^/]+\.(?:dist-info/METADATA|egg-info/PKG-INFO|egg-info)$")
_NODE_PACKAGE = re.compile(r"(?:^|/)node_modules/(?:@[^/]+/)?[^/@][^/]*/package\.json$")
_POM_PROPERTIES = re.compile(r"(?:^|/)META-INF/maven/[^/]+/[^/]+/pom\.properties$")
_JAVA_ARCHIVE = re.compile(r"\.(?:jar|war|ear|par|sar|hpi|jpi|kar)$", re.IGNORECASE)


def is_python_metadata(path: str) -> bool:
    return bool(_DIST_INFO.search(path))


def is_npm_package(path: str) -> bool:
    return bool(_NODE_PACKAGE.search(path))


def is_pom_properties(path: str) -> bool:
    return bool(_POM_PROPERTIES.search(path))


def is_java_archive(path: str) -> bool:
    return bool(_JAVA_ARCHIVE.search(path))


def parse_python_metadata(text: str, location: str) -> list[Package]:
    headers = HeaderParser().parsestr(text, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return []
    return [Package("pypi", str(name).strip(), str(version).strip(), location=location)]


def parse_npm_package(data: bytes, location: str) -> list[Package]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(doc, dict):
        return []
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return []
    return [Package("npm", name, version, location=location)]


def parse_pom_properties(text: str, location: str) -> list[Package]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    group, artifact, version = values.get("groupId"), values.get("artifactId"), values.get("version")
    if not group or not artifact or not version:
        return []
    return [Package("maven", f"{group}:{artifact}", version, location=location)]
