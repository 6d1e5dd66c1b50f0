"""Small server-side SVG charts: no JavaScript, each with a <title>, an aria-label and a table beside it."""
from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 200
LEFT, BOTTOM, TOP = 44, 28, 10
# Colour-blind-safe (Okabe–Ito); the table next to each chart carries the same numbers.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def _svg(title: str, summary: str, body: list[str]) -> SafeString:
    # Every interpolated text goes through escape(); the numbers are formatted by us.
    return mark_safe(  # noqa: S308 - built only from escaped text and formatted numbers
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(summary)}" class="chart"><title>{escape(title)}</title>'
        f'<desc>{escape(summary)}</desc>{"".join(body)}</svg>'
    )


def _axis(y_max: float, fmt: str, top: int = TOP) -> list[str]:
    plot_h = HEIGHT - BOTTOM - top
    parts = [f'<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#666"/>',
             f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - BOTTOM}" stroke="#666"/>']
    for fraction in (0.0, 0.5, 1.0):
        y = HEIGHT - BOTTOM - fraction * plot_h
        parts.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
                     f'{escape(format(y_max * fraction, fmt))}</text>')
    return parts


def _slots(n: int) -> tuple[float, float]:
    slot = (WIDTH - LEFT - 8) / max(n, 1)
    return slot, max(min(slot * 0.7, 40), 1)


def _day_labels(names: list[str], slot: float) -> list[str]:
    step = max(1, len(names) // 10)  # at most about ten labels under the axis
    return [
        f'<text x="{LEFT + 4 + slot * i + slot / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle" font-size="10">'
        f'{escape(name)}</text>'
        for i, name in enumerate(names) if i % step == 0
    ]


def bar_chart(*, title: str, summary: str, bars: list[tuple[str, float]]) -> SafeString:
    """Return an SVG bar chart of (name, value) pairs."""
    y_max = max((value for _, value in bars), default=0) or 1
    slot, width = _slots(len(bars))
    plot_h = HEIGHT - BOTTOM - TOP
    body = _axis(y_max, "g")
    for i, (name, value) in enumerate(bars):
        h = plot_h * value / y_max
        x = LEFT + 4 + slot * i + (slot - width) / 2
        body.append(f'<rect x="{x:.1f}" y="{HEIGHT - BOTTOM - h:.1f}" width="{width:.1f}" height="{h:.1f}" '
                    f'fill="{PALETTE[0]}"><title>{escape(name)}: {value:g}</title></rect>')
    body += _day_labels([name for name, _ in bars], slot)
    return _svg(title, summary, body)


def stacked_shares(
    *, title: str, summary: str, columns: list[tuple[str, dict[str, float]]], labels: list[str]
) -> SafeString:
    """Return an SVG of 100% stacked columns, one per (name, {label: share}) pair, with a legend."""
    slot, width = _slots(len(columns))
    top = TOP + 14  # room for the legend
    plot_h = HEIGHT - BOTTOM - top
    body = _axis(1.0, ".0%", top)
    for i, (name, shares) in enumerate(columns):
        x = LEFT + 4 + slot * i + (slot - width) / 2
        y = HEIGHT - BOTTOM
        for j, label in enumerate(labels):
            h = plot_h * shares.get(label, 0.0)
            y -= h
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" '
                        f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(name)} · {escape(label)}: '
                        f'{shares.get(label, 0.0):.0%}</title></rect>')
    for j, label in enumerate(labels):
        x = LEFT + 10 + j * 130
        body.append(f'<rect x="{x}" y="{TOP - 8}" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>'
                    f'<text x="{x + 14}" y="{TOP + 1}" font-size="10">{escape(label)}</text>')
    body += _day_labels([name for name, _ in columns], slot)
    return _svg(title, summary, body)


def line_chart(
    *, title: str, summary: str, points: list[tuple[str, float | None]], y_max: float = 1.0
) -> SafeString:
    """Return an SVG line chart of (name, value) pairs on a 0..y_max scale; None leaves a gap."""
    slot, _width = _slots(len(points))
    plot_h = HEIGHT - BOTTOM - TOP
    body = _axis(y_max, ".2f")
    segment: list[str] = []
    for i, (name, value) in enumerate([*points, ("", None)]):
        if value is None:
            if len(segment) > 1:
                body.append(f'<polyline points="{" ".join(segment)}" fill="none" stroke="{PALETTE[0]}" '
                            f'stroke-width="2"/>')
            segment = []
            continue
        x, y = LEFT + 4 + slot * i + slot / 2, HEIGHT - BOTTOM - plot_h * min(value, y_max) / y_max
        segment.append(f"{x:.1f},{y:.1f}")
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{PALETTE[0]}">'
                    f'<title>{escape(name)}: {value:.3f}</title></circle>')
    body += _day_labels([name for name, _ in points], slot)
    return _svg(title, summary, body)
