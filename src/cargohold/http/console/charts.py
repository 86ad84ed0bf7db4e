"""Server-side SVG charts: bars, horizontal bars and lines, accessible and dependency-free.

Each chart is an inline <svg role="img"> with a <title> and a <desc> that says what it shows in
words, colours with at least 3:1 contrast against white, lines told apart by dash pattern as well
as colour, and the same numbers as rows for a data-table fallback (the template renders both).
Pure functions of their input: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

# Each has a contrast ratio of at least 4.5:1 against white (WCAG 1.4.11 asks 3:1 for graphics).
PALETTE = ("#1f4e99", "#b35900", "#2e7d32", "#6a1b9a", "#00695c", "#ad1457")
DASHES = ("", "6 4", "2 3", "10 3 2 3", "1 5", "12 6")
FONT = "system-ui, sans-serif"
TEXT_COLOR = "#1b1f24"
GRID_COLOR = "#d0d7de"

Format = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Chart:
    """A rendered chart and the table that carries the same numbers."""

    ident: str
    title: str
    description: str
    svg: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def plain(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is >= value (1 for nothing)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def ticks(maximum: float, count: int = 4, *, binary: bool = False) -> list[float]:
    """Evenly spaced gridline values from 0 to a nice ceiling of maximum (in powers of 1024 when binary,
    so that byte axes read 256 KiB, 512 KiB... rather than 2.4 KiB, 4.9 KiB...)."""
    scale = 1.0
    if binary and maximum >= 1024:
        scale = 1024.0 ** math.floor(math.log(maximum, 1024))
    top = nice_ceiling(maximum / scale) * scale
    return [top * i / count for i in range(count + 1)]


_NUMBER = re.compile(r"^(.*?)(-?[\d,]*\.?\d+(?:e[-+]?\d+)?)(.*)$")


def tick_labels(values: Sequence[float], fmt: Format) -> list[str]:
    """fmt for each tick; when that rounds ticks to the same text (tiny costs: "$0.00" five times),
    the same prefix and unit around as many decimals as the tick step needs."""
    labels = [fmt(v) for v in values]
    if len(set(labels)) == len(labels) or len(values) < 2:
        return labels
    step = values[1] - values[0]
    decimals = max(0, -math.floor(math.log10(step)) + 1) if step > 0 else 2
    m = _NUMBER.match(fmt(values[-1]))
    prefix, suffix = (m[1], m[3]) if m else ("", "")
    return [f"{prefix}{v:,.{decimals}f}{suffix}" for v in values]


def text_width(text: str, size: int = 11) -> float:
    """A generous estimate of rendered width (no font metrics on the server)."""
    return len(text) * size * 0.62


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, content: str, *, anchor: str = "start", size: int = 12,
          weight: str = "normal", extra: str = "") -> str:
    return (f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}" font-size="{size}" font-weight="{weight}" '
            f'fill="{TEXT_COLOR}" font-family="{FONT}"{extra}>{escape(content)}</text>')


def _open(ident: str, title: str, description: str, width: int, height: int) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
            f'class="chart" role="img" aria-labelledby="{ident}-title {ident}-desc" focusable="false">',
            f'<title id="{ident}-title">{escape(title)}</title>',
            f'<desc id="{ident}-desc">{escape(description)}</desc>']


def _legend(series: Sequence[Series], x: float, y: float, *, lines: bool) -> list[str]:
    out = ['<g class="legend" aria-hidden="true">']
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        if lines:
            dash = DASHES[i % len(DASHES)]
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<line x1="{_num(x)}" y1="{_num(y - 4)}" x2="{_num(x + 18)}" y2="{_num(y - 4)}" '
                       f'stroke="{color}" stroke-width="3"{dash_attr}/>')
        else:
            out.append(f'<rect x="{_num(x)}" y="{_num(y - 10)}" width="12" height="12" fill="{color}"/>')
        out.append(_text(x + 24, y, s.name))
        x += 24 + 7.2 * len(s.name) + 18
    out.append("</g>")
    return out


def _describe(kind: str, categories: Sequence[str], series: Sequence[Series], fmt: Format) -> str:
    """One sentence per series: its range and where it peaks, for screen readers."""
    if not categories or not series:
        return f"{kind}: no data."
    parts = [f"{kind} over {len(categories)} points from {categories[0]} to {categories[-1]}."]
    for s in series:
        known = [(c, v) for c, v in zip(categories, s.values, strict=False) if v is not None]
        if not known:
            parts.append(f"{s.name}: no data.")
            continue
        peak = max(known, key=lambda cv: cv[1])
        parts.append(f"{s.name}: {fmt(known[0][1])} at {known[0][0]}, {fmt(known[-1][1])} at {known[-1][0]}, "
                     f"highest {fmt(peak[1])} at {peak[0]}.")
    return " ".join(parts)


def _table(label: str, categories: Sequence[str], series: Sequence[Series], fmt: Format
           ) -> tuple[list[str], list[list[str]]]:
    columns = [label, *(s.name for s in series)]
    rows = [[c, *("—" if i >= len(s.values) or s.values[i] is None else fmt(s.values[i] or 0.0)
                  for s in series)] for i, c in enumerate(categories)]
    return columns, rows


def _empty(ident: str, title: str, width: int, height: int) -> Chart:
    parts = _open(ident, title, f"{title}: no data yet.", width, height)
    parts.append(f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#ffffff" '
                 f'stroke="{GRID_COLOR}"/>')
    parts.append(_text(width / 2, height / 2, "No data yet", anchor="middle", size=14))
    parts.append("</svg>")
    return Chart(ident, title, f"{title}: no data yet.", "".join(parts))


def _axes(width: int, height: int, left: float, top: float, bottom: float, top_value: float,
          grid: Sequence[float], labels: Sequence[str]) -> tuple[list[str], Callable[[float], float]]:
    plot_h = height - top - bottom

    def y_of(v: float) -> float:
        return top + plot_h - (v / top_value) * plot_h if top_value else top + plot_h

    out = ['<g class="grid" aria-hidden="true">']
    for g, label in zip(grid, labels, strict=True):
        y = y_of(g)
        out.append(f'<line x1="{_num(left)}" y1="{_num(y)}" x2="{_num(width - 10)}" y2="{_num(y)}" '
                   f'stroke="{GRID_COLOR}" stroke-width="1"/>')
        out.append(_text(left - 6, y + 4, label, anchor="end", size=11))
    out.append(f'<line x1="{_num(left)}" y1="{_num(y_of(0))}" x2="{_num(width - 10)}" y2="{_num(y_of(0))}" '
               f'stroke="{TEXT_COLOR}" stroke-width="1"/>')
    out.append("</g>")
    return out, y_of


def _left(labels: Sequence[str]) -> float:
    """The plot's left edge: room for the widest y-axis label."""
    return max(48.0, 14 + max(text_width(t) for t in labels))


def _x_labels(categories: Sequence[str], centers: Sequence[float], y: float) -> list[str]:
    step = max(1, math.ceil(len(categories) / 12))  # at most ~12 labels: they must not overlap
    out = ['<g class="x-labels" aria-hidden="true">']
    for i, (c, x) in enumerate(zip(categories, centers, strict=True)):
        if i % step == 0 or i == len(categories) - 1:
            out.append(_text(x, y, c, anchor="middle", size=11))
    out.append("</g>")
    return out


def bar_chart(ident: str, title: str, categories: Sequence[str], series: Sequence[Series], *,
              fmt: Format = plain, stacked: bool = False, label: str = "Month", binary: bool = False,
              width: int = 640, height: int = 300) -> Chart:
    """Vertical bars per category: grouped side by side, or stacked."""
    values = [v for s in series for v in s.values if v is not None]
    if not categories or not values:
        return _empty(ident, title, width, height)
    if stacked:
        sums = [sum((s.values[i] or 0.0) for s in series if i < len(s.values)) for i in range(len(categories))]
        maximum = max(sums)
    else:
        maximum = max(values)
    grid = ticks(max(maximum, 0.0), binary=binary)
    labels = tick_labels(grid, fmt)
    left, top, bottom = _left(labels), 34.0 if len(series) > 1 else 14.0, 30.0
    parts = _open(ident, title, _describe("Bar chart", categories, series, fmt), width, height)
    if len(series) > 1:
        parts += _legend(series, left, 18, lines=False)
    axes, y_of = _axes(width, height, left, top, bottom, grid[-1], grid, labels)
    parts += axes
    slot = (width - 10 - left) / len(categories)
    group_w = slot * 0.7
    centers = [left + slot * (i + 0.5) for i in range(len(categories))]
    parts.append('<g class="bars">')
    for i, category in enumerate(categories):
        base = 0.0
        for j, s in enumerate(series):
            value = s.values[i] if i < len(s.values) else None
            if value is None:
                continue
            value = max(0.0, value)
            color = PALETTE[j % len(PALETTE)]
            if stacked:
                x, w = centers[i] - group_w / 2, group_w
                y0, y1 = y_of(base + value), y_of(base)
                base += value
            else:
                w = group_w / len(series)
                x = centers[i] - group_w / 2 + j * w
                y0, y1 = y_of(value), y_of(0)
            parts.append(f'<rect x="{_num(x)}" y="{_num(y0)}" width="{_num(max(w - 1, 1))}" '
                         f'height="{_num(max(y1 - y0, 0))}" fill="{color}">'
                         f'<title>{escape(f"{s.name}, {category}: {fmt(value)}")}</title></rect>')
    parts.append("</g>")
    parts += _x_labels(categories, centers, height - bottom + 18)
    parts.append("</svg>")
    columns, rows = _table(label, categories, series, fmt)
    return Chart(ident, title, _describe("Bar chart", categories, series, fmt), "".join(parts), columns, rows)


def line_chart(ident: str, title: str, categories: Sequence[str], series: Sequence[Series], *,
               fmt: Format = plain, label: str = "Month", binary: bool = False,
               width: int = 640, height: int = 300) -> Chart:
    """One line per series; None values leave a gap. Each point is a marker with its own tooltip."""
    values = [v for s in series for v in s.values if v is not None]
    if not categories or not values:
        return _empty(ident, title, width, height)
    grid = ticks(max(max(values), 0.0), binary=binary)
    labels = tick_labels(grid, fmt)
    left, top, bottom = _left(labels), 34.0 if len(series) > 1 else 14.0, 30.0
    parts = _open(ident, title, _describe("Line chart", categories, series, fmt), width, height)
    if len(series) > 1:
        parts += _legend(series, left, 18, lines=True)
    axes, y_of = _axes(width, height, left, top, bottom, grid[-1], grid, labels)
    parts += axes
    slot = (width - 10 - left) / len(categories)
    centers = [left + slot * (i + 0.5) for i in range(len(categories))]
    for j, s in enumerate(series):
        color, dash = PALETTE[j % len(PALETTE)], DASHES[j % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        runs: list[list[str]] = [[]]
        markers = []
        for i, value in enumerate(s.values[:len(categories)]):
            if value is None:
                runs.append([])
                continue
            x, y = centers[i], y_of(max(0.0, value))
            runs[-1].append(f"{_num(x)},{_num(y)}")
            markers.append(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="4" fill="{color}">'
                           f'<title>{escape(f"{s.name}, {categories[i]}: {fmt(value)}")}</title></circle>')
        parts.append('<g class="series">')
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" '
                             f'stroke-width="2.5"{dash_attr}/>')
        parts.extend(markers)
        parts.append("</g>")
    parts += _x_labels(categories, centers, height - bottom + 18)
    parts.append("</svg>")
    columns, rows = _table(label, categories, series, fmt)
    return Chart(ident, title, _describe("Line chart", categories, series, fmt), "".join(parts), columns, rows)


def hbar_chart(ident: str, title: str, items: Sequence[tuple[str, float]], *, fmt: Format = plain,
               label: str = "Repository", value_label: str = "Value", width: int = 640) -> Chart:
    """Horizontal bars, one per item, largest first, each labelled with its value."""
    items = sorted(((k, max(0.0, v)) for k, v in items), key=lambda kv: (-kv[1], kv[0]))
    row_h, top = 26, 8
    height = max(80, top * 2 + row_h * len(items))
    if not items:
        return _empty(ident, title, width, height)
    name_w = min(240.0, 16 + max(text_width(k, 12) for k, _ in items))
    value_w = 16 + max(text_width(fmt(v), 12) for _, v in items)
    plot_w = max(width - name_w - value_w - 10, 40.0)
    top_value = max(v for _, v in items) or 1.0
    series = [Series(value_label, [v for _, v in items])]
    names = [k for k, _ in items]
    description = _describe("Horizontal bar chart", names, series, fmt) if len(items) > 1 else \
        f"Horizontal bar chart: {names[0]} {fmt(items[0][1])}."
    parts = _open(ident, title, description, width, height)
    parts.append('<g class="bars">')
    for i, (name, value) in enumerate(items):
        y = top + i * row_h
        shown = name if text_width(name, 12) + 16 <= name_w else name[: int((name_w - 16) / (12 * 0.62)) - 1] + "…"
        parts.append(_text(name_w - 8, y + row_h / 2 + 4, shown, anchor="end"))
        w = plot_w * value / top_value
        parts.append(f'<rect x="{_num(name_w)}" y="{_num(y + 4)}" width="{_num(max(w, 1))}" '
                     f'height="{row_h - 8}" fill="{PALETTE[0]}">'
                     f'<title>{escape(f"{name}: {fmt(value)}")}</title></rect>')
        parts.append(_text(name_w + w + 6, y + row_h / 2 + 4, fmt(value)))
    parts.append("</g></svg>")
    columns, rows = _table(label, names, series, fmt)
    return Chart(ident, title, description, "".join(parts), columns, rows)
