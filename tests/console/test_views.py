"""Fast unit tests for the console's helpers: formatting, push commands, manifests, redirects, usage."""

from __future__ import annotations

import base64
import json

import pytest

from cargohold.http.console.routes import login_password, safe_next
from cargohold.http.console.usage import usage_charts, usage_view
from cargohold.http.console.views import (
    human_bytes,
    image_kind,
    manifest_view,
    money,
    push_commands,
    registry_host,
    severity_counts,
    short_digest,
)

NBSP = "\u00a0"


@pytest.mark.parametrize(("size", "text"), [(None, "—"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                            (5 * 1024**3 + 1, "5.0 GiB")])
def test_human_bytes(size: int | None, text: str) -> None:
    assert human_bytes(size) == text.replace(" ", NBSP)


def test_money_and_digests() -> None:
    assert money(1234.5) == "$1,234.50"
    assert money(0.00042) == "$0.0004"
    assert money(0) == "$0.00"
    assert money(3, "EUR") == "EUR 3.00"
    assert short_digest("sha256:" + "ab" * 32) == "sha256:abababababab"


def test_registry_host_like_ecr() -> None:
    assert registry_host("reg:5000", "000000000000", "000000000000") == "reg:5000"
    assert registry_host("reg:5000", "000000000000", "111122223333") == "111122223333.reg:5000"


def test_push_commands_use_the_real_uri_and_quote() -> None:
    commands = push_commands("reg:5000/team/app", "team/app", "http://reg:5000", "us-east-1", "reg:5000")
    assert [c.command for c in commands] == [
        "aws ecr get-login-password --region us-east-1 --endpoint-url http://reg:5000 | "
        "docker login --username AWS --password-stdin reg:5000",
        "docker build -t team/app .",
        "docker tag team/app:latest reg:5000/team/app:latest",
        "docker push reg:5000/team/app:latest",
    ]
    odd = push_commands("h/x", "x", "http://h; rm -rf /", "us-east-1", "h")
    assert "'http://h; rm -rf /'" in odd[0].command  # never a second shell command


def test_manifest_view_image_index_and_garbage() -> None:
    image = manifest_view(json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:c", "size": 3},
                                      "layers": [{"digest": "sha256:l", "size": 10, "mediaType": "t"}],
                                      "subject": {"digest": "sha256:s"}, "annotations": {"a": 1}}).encode(),
                          "application/vnd.oci.image.manifest.v1+json")
    assert not image.is_index and image.layers == [{"digest": "sha256:l", "size": 10, "media_type": "t"}]
    assert image.config == {"digest": "sha256:c", "size": 3} and image.annotations == {"a": "1"}
    assert image.pretty.startswith("{\n  ")
    index = manifest_view(json.dumps({"manifests": [
        {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": "sha256:b", "platform": {"os": "windows", "architecture": "amd64", "os.version": "10.0"}},
        {"digest": "sha256:c"}]}).encode(), "application/vnd.oci.image.index.v1+json")
    assert index.is_index
    assert [p["platform"] for p in index.platforms] == ["linux/arm64/v8", "windows/amd64 (10.0)", "unknown"]
    assert manifest_view(b"\xff not json", "x").pretty.startswith("\ufffd")
    assert manifest_view(b"[1]", "x").layers == []


def test_image_kind() -> None:
    assert image_kind("application/vnd.oci.image.index.v1+json", None) == "Image index"
    assert image_kind("application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.config.v1+json") \
        == "Image"
    assert image_kind("application/vnd.oci.image.manifest.v1+json", "application/spdx+json") == "Artifact"


def test_severity_counts_in_order() -> None:
    assert list(severity_counts({"low": 1, "CRITICAL": 2, "HIGH": 0})) == ["CRITICAL", "LOW"]
    assert severity_counts([{"severity": "high"}, {"severity": "HIGH"}, {}]) == {"HIGH": 2, "UNDEFINED": 1}


@pytest.mark.parametrize(("value", "expected"), [
    ("/console/repositories/a", "/console/repositories/a"), ("/console/usage?months=3", "/console/usage?months=3"),
    ("https://evil.example/console/", "/console/repositories"), ("//evil.example", "/console/repositories"),
    ("/consolex", "/console/repositories"), ("/console/\\evil", "/console/repositories"),
    (None, "/console/repositories"),
])
def test_safe_next(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def test_login_password_accepts_the_token_or_its_base64_form() -> None:
    token = "eyJrIjoiQUtJQSJ9.c2lnbmF0dXJl"
    assert login_password(token) == token
    assert login_password(base64.b64encode(f"AWS:{token}".encode()).decode()) == token
    assert login_password("plain-secret") == "plain-secret"


def test_usage_view_tolerates_partial_reports() -> None:
    view = usage_view({"currency": "USD", "months": [
        {"month": "2025-02", "repositories": [{"repository": "a", "total_cost": 1.5, "push_bytes": 10}]},
        {"month": "2025-01", "repositories": [{"repository": "a", "total_cost": 0.5}, {"repository": "b"}, "junk"],
         "totals": {"total_cost": 0.75}},
        "junk"], "projection": {"month": "2025-03", "total_cost": 2.0}, "principals": [{"principal": "p"}, 1]})
    assert [m.month for m in view.months] == ["2025-01", "2025-02"]  # sorted
    assert view.months[0].totals["total_cost"] == 0.75  # totals from the report when given
    assert view.months[1].totals["total_cost"] == 1.5 and view.months[1].totals["push_bytes"] == 10  # else summed
    assert view.repository_costs() == {"a": 2.0, "b": 0.0}
    assert view.principal_columns() == ["principal"]
    charts = {c.ident: c for c in usage_charts(view)}
    assert set(charts) == {"storage-gb-months", "cost-per-month", "cost-trend", "cost-per-repository",
                           "transfer-bytes"}
    trend = charts["cost-trend"]
    assert trend.rows == [["2025-01", "$0.75", "—"], ["2025-02", "$1.50", "$1.50"], ["2025-03", "—", "$2.00"]]
    assert usage_charts(usage_view({"months": []}))[0].rows == []  # nothing yet: empty charts, no crash
