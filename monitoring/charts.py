"""Small server-rendered SVG charts for the dashboard: no JavaScript, no CDN."""

from __future__ import annotations

from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 180, 44, 22, 10
COLORS = {
    "received": "#6b7f99",
    "delivered": "#2e8b57",
    "failed": "#c0392b",
    "latency_p95_ms": "#8e44ad",
    "wait_max_s": "#d35400",
}


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def line_chart(
    series: dict[str, list[tuple[datetime, float]]], *, title: str, unit: str = "", time_format: str = "%H:%M"
) -> SafeString:
    """One SVG with a line per series; points share the same time buckets."""
    names = [name for name, points in series.items() if points]
    if not names:
        # The title is escaped.
        return mark_safe(f'<p class="empty">{escape(title)}: no data</p>')  # nosec
    points_count = max(len(series[name]) for name in names)
    top = _nice_max(max((v for name in names for _, v in series[name]), default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT - 10, HEIGHT - PAD_BOTTOM - PAD_TOP

    def x(i: int) -> float:
        return PAD_LEFT + (plot_w * i / max(points_count - 1, 1))

    def y(v: float) -> float:
        return PAD_TOP + plot_h - plot_h * v / top

    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        gy = y(top * fraction)
        parts.append(f'<line x1="{PAD_LEFT}" x2="{WIDTH - 10}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#ddd"/>')
        label = f"{top * fraction:g}{unit}"
        parts.append(f'<text x="{PAD_LEFT - 4}" y="{gy + 4:.1f}" text-anchor="end" font-size="10">{label}</text>')
    first = series[names[0]]
    last = len(first) - 1
    for i, anchor in ((0, "start"), (last // 2, "middle"), (last, "end")):
        if 0 <= i < len(first):
            parts.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}" font-size="10">'
                f"{first[i][0].strftime(time_format)}</text>"
            )
    for n, name in enumerate(names):
        color = COLORS.get(name, "#333")
        coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, (_, v) in enumerate(series[name]))
        parts.append(
            f'<polyline class="series-{escape(name)}" fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>'
        )
        parts.append(
            f'<text x="{PAD_LEFT + 8 + n * 110}" y="{PAD_TOP + 10}" font-size="11" fill="{color}">'
            f"■ {escape(name.replace('_', ' '))}</text>"
        )
    parts.append("</svg>")
    # Every label above is escaped or numeric.
    return mark_safe("".join(parts))  # noqa: S308  # nosec
