"""The usage and cost page: charts drawn server-side as SVG, with text alternatives."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.console.conftest import Gallery, screenshot, sign_in
from tests.support.server import ServerProcess


def test_cost_page_has_charts_with_text_alternatives(page: Any, server: ServerProcess, gallery: Gallery) -> None:
    sign_in(page, server.key_id, server.secret, "/console/usage?months=3")
    expect(page.get_by_role("heading", level=1)).to_have_text("Usage and cost")
    charts = page.locator("figure.chart-figure svg[role=img]")
    expect(charts.first).to_be_visible()
    assert charts.count() >= 2
    for i in range(charts.count()):
        svg = charts.nth(i)
        title = svg.locator("title").first.text_content()
        assert title, "every chart has a title"
        assert svg.get_attribute("aria-labelledby"), "and is labelled by its title and description"
    # The text alternative of each chart: a data table, one click away.
    page.get_by_text("Data table:").first.click()
    expect(page.locator("figure.chart-figure table").first).to_be_visible()
    expect(page.get_by_label("Period", exact=True)).to_have_value("3")
    main = page.get_by_role("main")
    if page.locator("svg[aria-labelledby^='cost-per-month-title']").count():
        # The usage API answered: storage, cost and transfer charts, and the gallery's repository costs.
        for ident in ("storage-gb-months", "cost-per-month", "cost-per-repository", "transfer-bytes"):
            expect(page.locator(f"svg[aria-labelledby^='{ident}-title']")).to_have_count(1)
        expect(main).to_contain_text("This month so far")
    else:
        expect(main).to_contain_text("Cost history is not available")
        expect(page.locator("svg[aria-labelledby^='storage-now-title']")).to_contain_text(gallery.repo[:20])
    screenshot(page, "usage")
