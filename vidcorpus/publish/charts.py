"""A small SVG chart kit for the report: horizontal (stacked) bars and histograms, plain SVG
with tooltips, no JavaScript and no plotting library."""

from __future__ import annotations

import html
from typing import Any, Sequence

import numpy as np

CHART_WIDTH = 720
LABEL_WIDTH = 240
ROW_HEIGHT = 22
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac")


def bar_chart_svg(bars: Sequence[tuple[str, float]], unit: str) -> str:
    """Horizontal bars, one per (label, value), value printed at the end of each bar."""
    rows = [(label, {unit: value}) for label, value in bars]
    return stacked_bar_chart_svg(rows, [unit], {unit: PALETTE[0]}, unit, legend=False)


def stacked_bar_chart_svg(rows: Sequence[tuple[str, dict[str, float]]], series: Sequence[str],
                          colors: dict[str, str], unit: str, legend: bool = True) -> str:
    """Horizontal stacked bars: one row per label, one segment per series, total at the end."""
    top = 24 if legend else 4
    height = top + ROW_HEIGHT * len(rows) + 4
    span = CHART_WIDTH - LABEL_WIDTH - 70
    largest = max((sum(values.values()) for _, values in rows), default=0) or 1
    parts = [f'<svg role="img" aria-label="{escape(unit)}" width="{CHART_WIDTH}" height="{height}" '
             f'viewBox="0 0 {CHART_WIDTH} {height}">']
    if legend:
        x = LABEL_WIDTH
        for name in series:
            parts.append(f'<rect x="{x}" y="4" width="12" height="12" fill="{colors[name]}"/>'
                         f'<text x="{x + 16}" y="14">{escape(name)}</text>')
            x += 24 + 8 * len(name)
    for i, (label, values) in enumerate(rows):
        y = top + i * ROW_HEIGHT
        parts.append(f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end">{escape(clip_label(label))}</text>')
        x = float(LABEL_WIDTH)
        for name in series:
            value = values.get(name, 0)
            width = span * value / largest
            if width > 0:
                tip = escape(f"{label}: {name} {fmt(value)}")
                parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{ROW_HEIGHT - 6}" '
                             f'fill="{colors[name]}"><title>{tip}</title></rect>')
                x += width
        parts.append(f'<text x="{x + 4:.1f}" y="{y + 15}">{fmt(sum(values.values()))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(values: Sequence[float], x_label: str, unit: str, bins: int = 12) -> str:
    """Vertical histogram with the bin edges on the x axis and counts above the bars."""
    counts, edges = histogram(values, bins)
    width, height, left, bottom, top = CHART_WIDTH, 240, 50, 40, 20
    plot_w, plot_h = width - left - 20, height - bottom - top
    largest = max(counts) or 1
    bar_w = plot_w / len(counts)
    parts = [f'<svg role="img" aria-label="{escape(x_label)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>']
    for i, count in enumerate(counts):
        x = left + i * bar_w
        h = plot_h * count / largest
        tip = f"{fmt(edges[i])}–{fmt(edges[i + 1])}: {count} {escape(unit)}"
        parts.append(f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                     f'fill="{PALETTE[0]}"><title>{tip}</title></rect>')
        if count:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - h - 3:.1f}" '
                         f'text-anchor="middle">{count}</text>')
    step = max(1, -(-len(edges) // 13))
    for i in range(0, len(edges), step):
        x = left + i * bar_w
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{fmt(edges[i])}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text x="12" y="{top + plot_h / 2:.1f}" transform="rotate(-90 12 {top + plot_h / 2:.1f})" '
                 f'text-anchor="middle">{escape(unit)}</text></svg>')
    return "".join(parts)


def histogram(values: Sequence[float], bins: int) -> tuple[list[int], list[float]]:
    """Counts and edges on round numbers (steps of 1, 2, 2.5 or 5 × 10ⁿ) covering [min, max], so
    the axis reads 0.5, 1, 1.5 rather than 1.707, 1.813; one bin when every value is the same."""
    data = np.asarray(values, dtype=np.float64)
    lo, hi = float(data.min()), float(data.max())
    if hi - lo <= 1e-9 * max(1.0, abs(hi)):   # equal up to rounding: numpy cannot bin that range
        return [int(data.size)], [lo, lo + 1.0]
    step = nice_step((hi - lo) / min(bins, max(1, data.size)))
    first = np.floor(lo / step) * step
    count = max(1, int(np.ceil((hi - first) / step - 1e-9)))
    edges = [round(float(first + i * step), 10) for i in range(count + 1)]
    if edges[-1] < hi:
        edges.append(round(edges[-1] + step, 10))
    counts, _ = np.histogram(data, bins=edges)
    return [int(c) for c in counts], edges


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10ⁿ at least `raw`."""
    magnitude = 10 ** np.floor(np.log10(raw))
    return float(next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw - 1e-12))


PERCENTILES = (5, 25, 50, 75, 95)


def percentiles(values: Sequence[float]) -> list[tuple[str, float]]:
    """(label, value) for min, the usual percentiles, mean and max."""
    data = np.asarray(values, dtype=np.float64)
    return ([("min", float(data.min()))] + [(f"p{p}", float(np.percentile(data, p))) for p in PERCENTILES]
            + [("mean", float(data.mean())), ("max", float(data.max()))])


def fmt(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else f"{number:.4g}"


def fmt_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{fmt(round(size, 1))} {unit}"
        size /= 1000


def clip_label(label: str, limit: int = 36) -> str:
    return label if len(label) <= limit else label[:limit - 1] + "…"


def escape(text: Any) -> str:
    return html.escape(str(text), quote=True)
