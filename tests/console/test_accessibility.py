"""axe-core (from npm) over the console's pages: no WCAG 2.1 A/AA violations.

axe.min.js is found at $CARGOHOLD_AXE_JS or in the global npm root (scripts/test runs
`npm install -g axe-core@4`); without it the test is skipped (failed with CARGOHOLD_REQUIRE_CLIENTS=1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import Gallery, sign_in
from tests.support.clients import unavailable
from tests.support.server import ServerProcess

TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def axe_path() -> Path | None:
    configured = os.environ.get("CARGOHOLD_AXE_JS")
    if configured:
        return Path(configured)
    npm = shutil.which("npm")
    if npm is None:
        return None
    root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=30).stdout.strip()
    path = Path(root) / "axe-core" / "axe.min.js"
    return path if path.exists() else None


@pytest.fixture(scope="module")
def axe_js() -> Path:
    path = axe_path()
    if path is None or not path.exists():
        unavailable("axe-core is not installed (npm install -g axe-core@4)")
    assert path is not None
    return path


def violations(page: Any, axe_js: Path) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(axe_js))
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", TAGS)
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]} for v in result["violations"]]


def test_pages_have_no_wcag_violations(browser: Any, server: ServerProcess, gallery: Gallery, axe_js: Path) -> None:
    context = browser.new_context(base_url=server.url, bypass_csp=True)  # CSP rightly refuses injected scripts
    try:
        check_pages(context.new_page(), server, gallery, axe_js)
    finally:
        context.close()


def check_pages(page: Any, server: ServerProcess, gallery: Gallery, axe_js: Path) -> None:
    page.goto("/console/signin")
    found = {"signin": violations(page, axe_js)}
    sign_in(page, server.key_id, server.secret)
    base = f"/console/repositories/{gallery.repo}"
    for name, path in [("repositories", "/console/repositories"), ("repository", base),
                       ("image", f"{base}/-/images/{gallery.v2.digest}"),
                       ("index", f"{base}/-/images/{gallery.index.digest}"),
                       ("permissions", f"{base}/-/permissions"), ("lifecycle", f"{base}/-/lifecycle"),
                       ("settings", f"{base}/-/settings"), ("push", f"{base}/-/push-commands"),
                       ("delete", f"{base}/-/delete"), ("create", "/console/create-repository"),
                       ("usage", "/console/usage"), ("not-found", "/console/repositories/console/nope-404")]:
        page.goto(path)
        page.locator("details").evaluate_all("els => els.forEach(e => e.open = true)")  # chart data tables too
        found[name] = violations(page, axe_js)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: tables scroll, charts shrink
    for name, path in [("repositories", "/console/repositories"), ("image", f"{base}/-/images/{gallery.v2.digest}"),
                       ("usage", "/console/usage")]:
        page.goto(path)
        found[f"{name}-narrow"] = violations(page, axe_js)
    bad = {name: v for name, v in found.items() if v}
    assert not bad, json.dumps(bad, indent=2)


def test_keyboard_reaches_everything_and_focus_is_visible(page: Any, server: ServerProcess,
                                                          gallery: Gallery) -> None:
    sign_in(page, server.key_id, server.secret, f"/console/repositories/{gallery.repo}")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    assert skip.evaluate("e => e === document.activeElement")
    assert skip.is_visible()  # off-screen until focused
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Tab order from the main content: breadcrumbs, then the toolbar, the tabs, the images.
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        focused = page.evaluate("""() => { const e = document.activeElement; const s = getComputedStyle(e);
            return {text: e.textContent.trim(), outline: s.outlineStyle, width: s.outlineWidth}; }""")
        assert focused["outline"] != "none" and focused["width"] != "0px", focused  # :focus-visible ring
        reached.append(focused["text"])
    for name in ("View push commands", "Delete repository", "Permissions", "Lifecycle policy", "Settings"):
        assert name in reached, reached
