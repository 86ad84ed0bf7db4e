"""Shaping service results for the console's pages: sizes, times, manifests, push commands."""

from __future__ import annotations

import datetime
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from cargohold.domain.manifests import DOCKER_IMAGE_CONFIG, INDEX_TYPES, OCI_IMAGE_CONFIG

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")


def image_kind(media_type: str, artifact_type: str | None) -> str:
    """What the images table calls a manifest: an image index, a container image or another artifact."""
    if media_type in INDEX_TYPES:
        return "Image index"
    if artifact_type and artifact_type not in (OCI_IMAGE_CONFIG, DOCKER_IMAGE_CONFIG):
        return "Artifact"
    return "Image"


def human_bytes(size: int | float | None) -> str:
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            # A no-break space: "20.0 KiB" never wraps between number and unit.
            return f"{value:.0f}\u00a0{unit}" if unit == "B" else f"{value:.1f}\u00a0{unit}"
        value /= 1024
    return f"{value:.1f}\u00a0TiB"  # pragma: no cover


def iso_time(ms: int | float | None) -> str:
    """Machine-readable time for <time datetime=...>."""
    if ms is None:
        return ""
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(timespec="seconds")


def show_time(ms: int | float | None) -> str:
    if ms is None:
        return "—"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def money(value: float | None, currency: str = "USD") -> str:
    if value is None:
        return "—"
    symbol = "$" if currency == "USD" else f"{currency} "
    return f"{symbol}{value:,.2f}" if value >= 0.01 or value == 0 else f"{symbol}{value:,.4f}"


def short_digest(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if hexpart else digest


def registry_host(public_host: str, home_account: str, account: str) -> str:
    """As ECR addresses registries: the home account's is the plain host, another's is <account>.<host>."""
    return public_host if account == home_account else f"{account}.{public_host}"


@dataclass(frozen=True)
class PushCommand:
    title: str
    command: str
    note: str = ""


def push_commands(repository_uri: str, name: str, endpoint_url: str, region: str, host: str) -> list[PushCommand]:
    """The ECR console's "View push commands", with this registry's endpoint and real repository URI."""
    local = name  # as ECR's console does: the local image is named like the repository
    q = shlex.quote
    return [
        PushCommand("Retrieve an authentication token and authenticate your Docker client to your registry",
                    f"aws ecr get-login-password --region {q(region)} --endpoint-url {q(endpoint_url)} | "
                    f"docker login --username AWS --password-stdin {q(host)}",
                    "Needs AWS CLI v2 with credentials for this registry (an access key id and secret)."),
        PushCommand("Build your Docker image (skip if it is already built)", f"docker build -t {q(local)} ."),
        PushCommand("Tag your image so you can push it to this repository",
                    f"docker tag {q(local + ':latest')} {q(repository_uri + ':latest')}"),
        PushCommand("Push the image to this repository", f"docker push {q(repository_uri + ':latest')}"),
    ]


@dataclass
class ManifestView:
    """What the image page shows about a manifest: pretty JSON, layers, platforms, config, subject."""

    pretty: str
    media_type: str
    is_index: bool
    config: dict[str, Any] | None = None
    layers: list[dict[str, Any]] = field(default_factory=list)
    platforms: list[dict[str, Any]] = field(default_factory=list)
    subject: dict[str, Any] | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)


def _platform(p: Any) -> str:
    if not isinstance(p, dict):
        return "unknown"
    text = "/".join(str(p[k]) for k in ("os", "architecture", "variant") if p.get(k))
    if p.get("os.version"):
        text += f" ({p['os.version']})"
    return text or "unknown"


def manifest_view(content: bytes | None, media_type: str) -> ManifestView:
    try:
        doc = json.loads(content or b"")
    except ValueError:
        return ManifestView((content or b"").decode(errors="replace"), media_type, False)
    if not isinstance(doc, dict):
        return ManifestView(json.dumps(doc, indent=2), media_type, False)
    view = ManifestView(json.dumps(doc, indent=2, sort_keys=False), media_type, media_type in INDEX_TYPES)
    config = doc.get("config")
    if isinstance(config, dict):
        view.config = config
    for layer in doc.get("layers") or []:
        if isinstance(layer, dict):
            view.layers.append({"digest": str(layer.get("digest", "")), "size": layer.get("size"),
                                "media_type": str(layer.get("mediaType", ""))})
    for child in doc.get("manifests") or []:
        if isinstance(child, dict):
            view.platforms.append({"digest": str(child.get("digest", "")), "size": child.get("size"),
                                   "media_type": str(child.get("mediaType", "")),
                                   "platform": _platform(child.get("platform")),
                                   "artifact_type": child.get("artifactType")})
    if isinstance(doc.get("subject"), dict):
        view.subject = doc["subject"]
    view.artifact_type = doc.get("artifactType") if isinstance(doc.get("artifactType"), str) else None
    annotations = doc.get("annotations")
    if isinstance(annotations, dict):
        view.annotations = {str(k): str(v) for k, v in annotations.items()}
    return view


def severity_counts(findings: Any) -> dict[str, int]:
    """Counts per severity from a findings summary ({"CRITICAL": 1, ...}) or a list of findings."""
    counts: dict[str, int] = {}
    if isinstance(findings, dict):
        for key, value in findings.items():
            if isinstance(value, int):
                counts[str(key).upper()] = value
    elif isinstance(findings, list):
        for item in findings:
            severity = str(item.get("severity", "UNDEFINED")).upper() if isinstance(item, dict) else "UNDEFINED"
            counts[severity] = counts.get(severity, 0) + 1
    return {s: counts[s] for s in SEVERITIES if counts.get(s)} | \
        {k: v for k, v in counts.items() if k not in SEVERITIES and v}
