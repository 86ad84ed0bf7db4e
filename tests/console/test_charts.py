"""The SVG charts: pure functions, checked as XML (no browser)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from cargohold.http.console.charts import (
    PALETTE,
    Series,
    bar_chart,
    hbar_chart,
    line_chart,
    nice_ceiling,
    tick_labels,
    ticks,
)

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def contrast(hex_color: str) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    lum = 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    return 1.05 / (lum + 0.05)


@pytest.mark.parametrize(("value", "expected"), [(0, 1), (-3, 1), (0.7, 1), (1, 1), (1.01, 2), (2.2, 2.5),
                                                 (3, 5), (7, 10), (11, 20), (240, 250), (999, 1000)])
def test_nice_ceiling(value: float, expected: float) -> None:
    assert nice_ceiling(value) == pytest.approx(expected)


def test_ticks_are_even_from_zero() -> None:
    assert ticks(7) == [0, 2.5, 5, 7.5, 10]


def test_bar_chart_is_valid_accessible_svg() -> None:
    chart = bar_chart("c1", "Storage", ["2025-01", "2025-02", "2025-03"], [Series("GB", [1.0, 4.0, 2.0])])
    root = parse(chart.svg)
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "c1-title c1-desc"
    assert root.find(f"{SVG}title").text == "Storage"  # type: ignore[union-attr]
    desc = root.find(f"{SVG}desc").text or ""  # type: ignore[union-attr]
    assert "2025-01" in desc and "highest 4 at 2025-02" in desc
    bars = root.findall(f".//{SVG}g[@class='bars']/{SVG}rect")
    assert len(bars) == 3
    heights = [float(b.get("height", 0)) for b in bars]
    assert heights[1] > heights[2] > heights[0] > 0
    assert heights[1] / heights[0] == pytest.approx(4, rel=0.02)  # bars are to scale
    assert [b.find(f"{SVG}title").text for b in bars][1] == "GB, 2025-02: 4"  # type: ignore[union-attr]
    assert chart.columns == ["Month", "GB"]
    assert chart.rows == [["2025-01", "1"], ["2025-02", "4"], ["2025-03", "2"]]


def test_grouped_and_stacked_bars() -> None:
    series = [Series("a", [1.0, 2.0]), Series("b", [3.0, None])]
    grouped = parse(bar_chart("g", "G", ["x", "y"], series).svg)
    assert len(grouped.findall(f".//{SVG}g[@class='bars']/{SVG}rect")) == 3  # None draws nothing
    assert grouped.find(f".//{SVG}g[@class='legend']") is not None  # two series: a legend
    stacked = bar_chart("s", "S", ["x", "y"], series, stacked=True)
    rects = parse(stacked.svg).findall(f".//{SVG}g[@class='bars']/{SVG}rect")
    # Stacked: the two parts of "x" share an x position and touch.
    assert rects[0].get("x") == rects[1].get("x")
    assert float(rects[1].get("y", 0)) + float(rects[1].get("height", 0)) == pytest.approx(float(rects[0].get("y", 0)),
                                                                                        abs=0.2)
    assert stacked.rows == [["x", "1", "3"], ["y", "2", "—"]]


def test_line_chart_gaps_and_dashes() -> None:
    chart = line_chart("l", "Cost", ["a", "b", "c", "d"], [Series("Actual", [1.0, 2.0, None, None]),
                                                          Series("Projected", [None, 2.0, None, 5.0])])
    root = parse(chart.svg)
    lines = root.findall(f".//{SVG}polyline")
    assert len(lines) == 1  # "Projected" has no two adjacent points: markers only
    assert len(root.findall(f".//{SVG}circle")) == 4
    legend = root.findall(f".//{SVG}g[@class='legend']/{SVG}line")
    assert legend[0].get("stroke-dasharray") is None and legend[1].get("stroke-dasharray")  # not colour alone


def test_hbar_sorted_labelled_and_escaped() -> None:
    chart = hbar_chart("h", "Cost <per> repo", [("small", 1.0), ("big&bad", 10.0), ("mid", 5.0)],
                       fmt=lambda v: f"${v:.2f}")
    root = parse(chart.svg)  # escaping keeps it well-formed
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts[:2] == ["big&bad", "$10.00"]
    assert [r[0] for r in chart.rows] == ["big&bad", "mid", "small"]
    assert root.find(f"{SVG}title").text == "Cost <per> repo"  # type: ignore[union-attr]


@pytest.mark.parametrize("make", [
    lambda: bar_chart("e", "Empty", [], []),
    lambda: bar_chart("e", "Empty", ["a"], [Series("s", [None])]),
    lambda: line_chart("e", "Empty", [], [Series("s", [])]),
    lambda: hbar_chart("e", "Empty", []),
])
def test_no_data_still_renders(make: object) -> None:
    chart = make()  # type: ignore[operator]
    root = parse(chart.svg)
    assert root.get("role") == "img"
    assert "No data yet" in "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert chart.rows == []


def test_zero_values_and_huge_values() -> None:
    assert parse(bar_chart("z", "Z", ["a", "b"], [Series("s", [0.0, 0.0])]).svg) is not None
    big = bar_chart("b", "B", ["a"], [Series("s", [3.2e15])])
    assert "3,200,000,000,000,000" in big.rows[0][1]


def test_many_categories_thin_out_the_labels() -> None:
    months = [f"2024-{m:02d}" for m in range(1, 13)] + [f"2025-{m:02d}" for m in range(1, 13)]
    root = parse(bar_chart("m", "M", months, [Series("s", [float(i) for i in range(24)])]).svg)
    labels = root.findall(f".//{SVG}g[@class='x-labels']/{SVG}text")
    assert 6 <= len(labels) <= 13
    assert labels[-1].text == "2025-12"


def test_palette_contrast_against_white() -> None:
    assert all(contrast(c) >= 4.5 for c in PALETTE)


def test_binary_ticks_for_bytes() -> None:
    assert ticks(5000, binary=True) == [0, 1280, 2560, 3840, 5120]  # 0, 1.25, 2.5, 3.75, 5 KiB
    assert ticks(3 * 1024**3, binary=True)[-1] == 5 * 1024**3
    assert ticks(700, binary=True) == ticks(700)  # under 1 KiB: plain decimal steps


def test_tick_labels_keep_unit_and_tell_tiny_ticks_apart() -> None:
    money = "${:,.2f}".format
    assert tick_labels([0, 0.5, 1.0], money) == ["$0.00", "$0.50", "$1.00"]
    tiny = tick_labels([0, 0.000025, 0.00005], money)
    assert tiny == ["$0.000000", "$0.000025", "$0.000050"]
    assert tick_labels([0, 0.0025, 0.005], lambda v: f"{v:.1f} GB-mo") == ["0.0000 GB-mo", "0.0025 GB-mo",
                                                                           "0.0050 GB-mo"]


def test_y_axis_labels_fit_inside_the_picture() -> None:
    chart = bar_chart("w", "W", ["a"], [Series("s", [123456789.0])], fmt=lambda v: f"{v:,.0f} bytes")
    for text in parse(chart.svg).findall(f".//{SVG}g[@class='grid']/{SVG}text"):
        assert float(text.get("x", 0)) - len(text.text or "") * 11 * 0.62 >= 0
