"""Server-side SVG charts for the console: no chart library, no script, nothing fetched from outside.

Each function takes a series from integrations.admin_console and returns SVG
markup (safe to inline in a page or to serve as image/svg+xml). Every bar and
point carries a <title>, so hovering shows the exact figure; an empty series
says so in words.
"""

from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import mark_safe

from .admin_console import nice_ceiling
from .admin_format import count, latency, usd

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 44, 34
PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569"]
OTHER = "#94a3b8"


def _label(at, size):
    return f"{at:%H}:00" if size == "hour" else f"{at:%d %b}"


def _frame(title, body, legend=()):
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" class="console-chart" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold" fill="#1e293b">{escape(title)}</text>',
    ]
    x = LEFT
    for name, colour in legend:  # one row under the title
        parts.append(f'<rect x="{x:.1f}" y="24" width="9" height="9" fill="{colour}"/>')
        parts.append(f'<text x="{x + 12:.1f}" y="32" fill="#334155">{escape(name)}</text>')
        x += 22 + 6.2 * len(name)
    parts.extend(body)
    parts.append("</svg>")
    return mark_safe("".join(parts))


def _empty(title, message):
    return _frame(
        title,
        [
            f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
            'fill="#f8fafc" stroke="#e2e8f0"/>',
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2 + 4}" text-anchor="middle" fill="#475569" font-size="13" '
            f'class="console-chart-empty">{escape(message)}</text>',
        ],
    )


def _axes(maximum, fmt, bins, size):
    plot_h = HEIGHT - TOP - BOTTOM
    plot_w = WIDTH - LEFT - RIGHT
    parts = []
    for i in range(5):
        value = maximum * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>')
        parts.append(
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#64748b">{escape(fmt(value))}</text>'
        )
    step = max(1, len(bins) // 8)
    slot = plot_w / len(bins)
    for i in range(0, len(bins), step):
        x = LEFT + slot * (i + 0.5)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" fill="#64748b">'
            f"{escape(_label(bins[i], size))}</text>"
        )
    unit = "UTC hours" if size == "hour" else "UTC days"
    parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end" fill="#94a3b8">{unit}</text>')
    return parts, plot_w, plot_h, slot


def _stacked(title, bins, size, series, fmt, empty_message, tip_fmt):
    """series: [(name, colour, values)] stacked bottom-up."""
    totals = [sum((s[2][i] for s in series), type(series[0][2][0])(0)) if series else 0 for i in range(len(bins))]
    if not series or not any(totals):
        return _empty(title, empty_message)
    maximum = nice_ceiling(float(max(totals)))
    parts, _plot_w, plot_h, slot = _axes(maximum, fmt, bins, size)
    bar_w = max(1.0, slot * 0.75)
    for i, at in enumerate(bins):
        base = TOP + plot_h
        for name, colour, values in series:
            value = float(values[i])
            if not value:
                continue
            h = plot_h * value / maximum
            x = LEFT + slot * i + (slot - bar_w) / 2
            base -= h
            tip = f"{_label(at, size)} {at:%Y-%m-%d} · {name}: {tip_fmt(values[i])}"
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    return _frame(title, parts, [(name, colour) for name, colour, _ in series])


def chart_calls(data, window_label):
    title = f"Calls and failures, {window_label}"
    ok = [c - f for c, f in zip(data["calls"], data["failures"], strict=True)]
    series = [("failed", "#dc2626", data["failures"]), ("succeeded or other", "#2563eb", ok)]
    return _stacked(title, data["bins"], data["size"], series, lambda v: f"{v:,.0f}", "No calls in this period.", count)


def chart_cost(data, window_label):
    title = f"Cost per {data['size']} by provider, {window_label}"
    named = data["series"][: len(PALETTE)]
    rest = data["series"][len(PALETTE) :]
    series = [(name, PALETTE[i], values) for i, (name, values) in enumerate(named)]
    if rest:
        other = [sum((v[i] for _, v in rest), Decimal(0)) for i in range(len(data["bins"]))]
        series.append(("other", OTHER, other))
    return _stacked(
        title,
        data["bins"],
        data["size"],
        series,
        lambda v: usd(Decimal(str(round(v, 6)))),
        "No spend in this period.",
        lambda v: usd(v),
    )


def chart_latency(data, window_label):
    title = f"p95 latency per provider, {window_label}"
    values = [v for _, vs in data["series"] for v in vs if v is not None]
    if not values:
        return _empty(title, "No calls in this period, so no latency to show.")
    maximum = nice_ceiling(max(values))
    bins, size = data["bins"], data["size"]
    parts, _plot_w, plot_h, slot = _axes(maximum, lambda v: latency(v), bins, size)
    legend = []
    for n, (name, points) in enumerate(data["series"]):
        colour = PALETTE[n % len(PALETTE)]
        legend.append((name, colour))
        path, dots = [], []
        for i, value in enumerate(points):
            if value is None:
                path.append(None)
                continue
            x = LEFT + slot * (i + 0.5)
            y = TOP + plot_h - plot_h * value / maximum
            path.append((x, y))
            tip = f"{_label(bins[i], size)} {bins[i]:%Y-%m-%d} · {name}: p95 {latency(value)}"
            dots.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"><title>{escape(tip)}</title></circle>'
            )
        segment = []
        for point in [*path, None]:
            if point is None:
                if len(segment) > 1:
                    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)
                    parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
                segment = []
            else:
                segment.append(point)
        parts.extend(dots)
    return _frame(title, parts, legend)
