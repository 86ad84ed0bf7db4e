"""Signing in and browsing: repositories, an image's manifest and layers, an index's platforms,
referrers, scan status, push commands."""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import expect

from tests.console.conftest import Gallery, login_token, screenshot, sign_in
from tests.support.server import ServerProcess


def test_bad_sign_in_shows_an_error(page: Any, server: ServerProcess) -> None:
    sign_in(page, server.key_id, "not-the-secret")
    expect(page.get_by_role("alert")).to_contain_text("Sign-in failed")
    expect(page.get_by_label("Access key ID")).to_have_value(server.key_id)  # kept; the secret is not
    expect(page.get_by_label("Secret access key or login token")).to_have_value("")
    screenshot(page, "signin-failed")
    page.goto("/console/repositories")
    assert "/console/signin" in page.url  # still not signed in


def test_sign_in_browse_to_an_image(page: Any, server: ServerProcess, gallery: Gallery) -> None:
    sign_in(page, server.key_id, server.secret, f"/console/repositories/{gallery.repo}")
    # The sign-in page sent us back where we were going.
    expect(page.get_by_role("heading", level=1)).to_have_text(gallery.repo)
    page.get_by_role("link", name="Repositories", exact=True).first.click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=gallery.repo, exact=True))
    # v1, v2, an untagged image, an index and its two children, an SBOM: seven manifests.
    expect(row.get_by_role("cell").nth(1)).to_have_text("7")
    screenshot(page, "repositories")
    row.get_by_role("link", name=gallery.repo).click()

    images = page.get_by_role("table", name="Images")
    expect(images.get_by_role("row")).to_have_count(1 + 7)  # header + 7 manifests
    expect(images).to_contain_text("v1")
    expect(images).to_contain_text("multi")
    expect(images).to_contain_text("untagged")
    expect(images).to_contain_text("Not scanned")
    screenshot(page, "repository-images")

    images.get_by_role("link", name="(v1)").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("v1")
    layers = page.get_by_role("table", name="Layers")
    expect(layers.get_by_role("row")).to_have_count(1 + 2)
    manifest = json.loads(gallery.v1.body)
    for layer in manifest["layers"]:
        expect(layers).to_contain_text(layer["digest"])
    expect(page.locator("#manifest + pre")).to_contain_text('"schemaVersion": 2')
    expect(page.locator("#manifest + pre")).to_contain_text(manifest["config"]["digest"])
    referrers = page.get_by_role("table", name="Referrers")
    expect(referrers).to_contain_text("application/vnd.example.sbom+json")
    expect(page.get_by_role("main")).to_contain_text("Not scanned")
    screenshot(page, "image")

    # Viewing is not pulling: lastRecordedPullTime stays empty.
    expect(page.locator("dl.facts")).to_contain_text("Never")


def test_index_shows_platforms(page: Any, server: ServerProcess, gallery: Gallery) -> None:
    sign_in(page, server.key_id, server.secret, f"/console/repositories/{gallery.repo}/-/images/{gallery.index.digest}")
    platforms = page.get_by_role("table", name="Platforms")
    expect(platforms).to_contain_text("linux/amd64")
    expect(platforms).to_contain_text("linux/arm64")
    platforms.get_by_role("link").first.click()
    expect(page.get_by_role("table", name="Layers")).to_be_visible()


def test_sign_in_with_an_ecr_login_token_and_sign_out(page: Any, server: ServerProcess) -> None:
    sign_in(page, "AWS", login_token(server))
    expect(page.get_by_role("heading", level=1)).to_have_text("Private repositories")
    expect(page.get_by_role("banner")).to_contain_text("Signed in as root")
    cookie = next(c for c in page.context.cookies() if c["name"] == "cargohold_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You have signed out")
    page.goto("/console/repositories")
    assert "/console/signin" in page.url


def test_push_commands_are_ready_to_copy(page: Any, server: ServerProcess, gallery: Gallery) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, server.key_id, server.secret, f"/console/repositories/{gallery.repo}")
    page.get_by_role("link", name="View push commands").first.click()
    uri = f"{server.address}/{gallery.repo}"
    commands = page.locator("ol pre")
    expect(commands).to_have_count(4)
    expect(commands.nth(0)).to_have_text(
        f"aws ecr get-login-password --region us-east-1 --endpoint-url {server.url} | "
        f"docker login --username AWS --password-stdin {server.address}")
    expect(commands.nth(1)).to_have_text(f"docker build -t {gallery.repo} .")
    expect(commands.nth(2)).to_have_text(f"docker tag {gallery.repo}:latest {uri}:latest")
    expect(commands.nth(3)).to_have_text(f"docker push {uri}:latest")
    page.get_by_role("button", name="Copy command 4").click()
    expect(page.locator("#copy-status")).to_contain_text("copied")
    assert page.evaluate("navigator.clipboard.readText()") == f"docker push {uri}:latest"
    screenshot(page, "push-commands")
