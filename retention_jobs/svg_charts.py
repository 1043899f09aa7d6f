"""Small inline SVG charts for the HTML report: plain strings, no script, no external
resource, so the page renders offline in any browser. Every text is escaped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

OK_COLOUR = "#3b6ea8"
BAD_COLOUR = "#c0392b"
MUTED_COLOUR = "#9aa5b1"
LIMIT_COLOUR = "#d35400"


@dataclass(frozen=True)
class Bar:
    label: str  # under the bar (vertical charts) or left of it (horizontal charts)
    value: float | None  # None: unbounded (horizontal charts draw it to the edge)
    colour: str = OK_COLOUR
    note: str = ""  # printed at the end of a horizontal bar


def _axis(value: float) -> tuple[float, int]:
    """(tick, ticks) of an axis from 0 to at least `value`: about four ticks of a round
    size (1, 2 or 5 times a power of ten, at least 1), so every label is a whole number."""
    raw = max(value, 1.0) / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    tick = next(f * magnitude for f in (1, 2, 5, 10) if f * magnitude >= raw)
    tick = max(tick, 1.0)
    return tick, max(1, math.ceil(value / tick))


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}".rstrip("0")


def column_chart(
    *,
    title: str,
    bars: Sequence[Bar],
    marker_at: float | None = None,
    marker_label: str = "",
    x_title: str = "",
    y_title: str = "",
    width: int = 520,
    height: int = 240,
    css_class: str = "chart",
) -> str:
    """Vertical bars with an optional dashed marker line between bars: `marker_at` is a
    position in bar units (2.5 = half way through the third bar)."""
    left, right, top, bottom = 52, 12, 38, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(bars), 1)
    slot = plot_w / n
    tick, ticks = _axis(max((b.value or 0 for b in bars), default=0))
    peak = tick * ticks
    out = [
        f'<svg class="{escape(css_class)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    for i in range(ticks + 1):  # horizontal grid with y labels
        value = tick * i
        y = top + plot_h - plot_h * i / ticks
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_fmt(value)}</text>')
    label_every = max(1, round(n / 12))
    for i, bar in enumerate(bars):
        value = bar.value or 0
        h = plot_h * value / peak
        x = left + i * slot + slot * 0.1
        out.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.8:.1f}" height="{h:.1f}" '
            f'fill="{bar.colour}"><title>{escape(bar.label)}: {_fmt(value)}</title></rect>'
        )
        if value:
            out.append(
                f'<text x="{x + slot * 0.4:.1f}" y="{top + plot_h - h - 3:.1f}" class="value" '
                f'text-anchor="middle">{_fmt(value)}</text>'
            )
        if i % label_every == 0:
            out.append(
                f'<text x="{left + i * slot + slot / 2:.1f}" y="{top + plot_h + 14}" class="tick" '
                f'text-anchor="middle">{escape(bar.label)}</text>'
            )
    out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" class="axis"/>')
    if marker_at is not None:
        x = left + min(max(marker_at, 0), n) * slot
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{top + plot_h}" stroke="{LIMIT_COLOUR}" '
            'stroke-width="2" stroke-dasharray="6 4" class="marker"/>'
        )
        # The label goes on the side of the line with room for it.
        right_side = x < left + plot_w * 0.7
        out.append(
            f'<text x="{x + 4 if right_side else x - 4:.1f}" y="{top + 8}" class="marker-label" '
            f'text-anchor="{"start" if right_side else "end"}" fill="{LIMIT_COLOUR}">{escape(marker_label)}</text>'
        )
    if x_title:
        out.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" class="axis-title" text-anchor="middle">'
            f"{escape(x_title)}</text>"
        )
    if y_title:
        out.append(
            f'<text x="14" y="{top + plot_h / 2:.1f}" class="axis-title" text-anchor="middle" '
            f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">{escape(y_title)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(
    *,
    title: str,
    bars: Sequence[Bar],
    marker: float,
    marker_label: str,
    unit: str,
    width: int = 760,
    css_class: str = "chart",
) -> str:
    """Horizontal bars (one per row) against a vertical marker; an unbounded bar (value
    None) runs to the right edge with a jagged end."""
    left, right, top, row = 210, 150, 30, 24
    plot_w = width - left - right
    height = top + row * max(len(bars), 1) + 34
    finite = [b.value for b in bars if b.value is not None]
    tick, ticks = _axis(max([*finite, marker * 1.25]))
    peak = tick * ticks
    scale = plot_w / peak
    out = [
        f'<svg class="{escape(css_class)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="8" y="18" class="chart-title">{escape(title)}</text>',
    ]
    for i in range(ticks + 1):
        value = tick * i
        x = left + plot_w * i / ticks
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - 30}" class="grid"/>')
        out.append(
            f'<text x="{x:.1f}" y="{height - 16}" class="tick" text-anchor="middle">{_fmt(value)} {escape(unit)}</text>'
        )
    for i, bar in enumerate(bars):
        y = top + i * row + 4
        w = plot_w + 20 if bar.value is None else bar.value * scale
        out.append(f'<text x="{left - 8}" y="{y + 12}" class="tick" text-anchor="end">{escape(bar.label)}</text>')
        out.append(
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row - 8}" fill="{bar.colour}">'
            f"<title>{escape(bar.label)}: {escape(bar.note)}</title></rect>"
        )
        out.append(f'<text x="{left + w + 6:.1f}" y="{y + 12}" class="value">{escape(bar.note)}</text>')
    x = left + marker * scale
    out.append(
        f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{height - 30}" stroke="{LIMIT_COLOUR}" '
        'stroke-width="2" stroke-dasharray="6 4" class="marker"/>'
    )
    out.append(
        f'<text x="{x + 4:.1f}" y="{top - 8}" class="marker-label" fill="{LIMIT_COLOUR}">{escape(marker_label)}</text>'
    )
    out.append("</svg>")
    return "\n".join(out)
