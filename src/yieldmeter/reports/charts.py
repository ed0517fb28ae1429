"""Charts drawn as inline SVG on the server: no script, no CDN, the same in a browser and a PDF.

Each function takes a :class:`~yieldmeter.reports.model.Chart` and returns an
``<svg>`` element as text. Colours are attributes (not CSS) so WeasyPrint and
a browser draw them alike; every chart has a ``<title>`` for screen readers.
"""

from __future__ import annotations

from html import escape

from yieldmeter.reports.model import Chart, fmt

PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#14b8a6", "#f97316", "#64748b")
INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'


def _num(v: float | str | None) -> float:
    """A value as a number to draw; unknown (None) and words such as "unpriced" draw as nothing."""
    return float(v) if v is not None and not isinstance(v, str) else 0.0


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" {FONT} font-size="12">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _text(
    x: float,
    y: float,
    s: str,
    *,
    anchor: str = "start",
    fill: str = INK,
    size: int = 12,
    weight: str = "normal",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}" font-size="{size}" '
        f'font-weight="{weight}">{escape(s)}</text>'
    )


def _short(label: str, n: int = 28) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def bar(chart: Chart, width: int = 640) -> str:
    """Horizontal bars, one per label, value at the end of each bar.

    With negative values the bars grow left and right of a zero line (negative ones in the
    second colour), so a fall reads as a fall; a value that is a word ("unpriced") is written
    where its bar would be.
    """
    n = max(len(chart.labels), 1)
    row, left, top = 24, 190, 28
    height = top + n * row + 10
    nums = [_num(v) for v in chart.values]
    vmax = max([0.0, *nums])
    vmin = min([0.0, *nums])
    span = width - left - 90
    if vmin < 0:  # leave room for the labels of the negative bars too
        span -= 60
    scale = span / ((vmax - vmin) or 1.0)
    zero = left + (60 if vmin < 0 else 0) - vmin * scale
    body = [_text(0, 16, chart.title, weight="bold", size=13)]
    if vmin < 0:
        body.append(
            f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{top}" y2="{top + n * row}" stroke="{MUTED}"/>'
        )
    for i, (label, v) in enumerate(zip(chart.labels, chart.values, strict=False)):
        y = top + i * row
        x = _num(v)
        w = abs(x) * scale
        x0 = zero - w if x < 0 else zero
        body.append(_text(left - 8, y + 15, _short(label), anchor="end"))
        body.append(
            f'<rect x="{x0:.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" rx="2" '
            f'fill="{PALETTE[3] if x < 0 else PALETTE[0]}"><title>{escape(label)}: '
            f"{fmt(v, chart.unit)}</title></rect>"
        )
        if x < 0:
            body.append(_text(x0 - 6, y + 15, fmt(v, chart.unit), anchor="end", fill=MUTED))
        else:
            body.append(_text(x0 + w + 6, y + 15, fmt(v, chart.unit), fill=MUTED))
    return _svg(width, height, chart.title, body)


def grouped(chart: Chart, width: int = 640) -> str:
    """Horizontal bars, one thin bar per series under each label (e.g. two unit costs per workflow)."""
    names = list(chart.series)
    n, k = max(len(chart.labels), 1), max(len(names), 1)
    bar_h, left, top = 14, 190, 46
    row = k * bar_h + 10
    height = top + n * row + 6
    vmax = max((_num(v) for s in names for v in chart.series[s]), default=0.0) or 1.0
    span = width - left - 90
    body = [_text(0, 16, chart.title, weight="bold", size=13)]
    x = 0.0
    for j, s in enumerate(names):
        body.append(f'<rect x="{x:.1f}" y="24" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>')
        body.append(_text(x + 14, 33, s, size=11))
        x += 24 + 7 * len(s)
    for i, label in enumerate(chart.labels):
        y = top + i * row
        body.append(_text(left - 8, y + row / 2 + 2, _short(label), anchor="end"))
        for j, s in enumerate(names):
            v = chart.series[s][i] if i < len(chart.series[s]) else None
            w = max(_num(v), 0.0) / vmax * span
            yy = y + j * bar_h
            body.append(
                f'<rect x="{left}" y="{yy + 1}" width="{w:.1f}" height="{bar_h - 3}" rx="2" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(label)} {escape(s)}: '
                f"{fmt(v, chart.unit)}</title></rect>"
            )
            body.append(_text(left + w + 6, yy + bar_h - 3, fmt(v, chart.unit), fill=MUTED, size=10))
    return _svg(width, height, chart.title, body)


def stacked(chart: Chart, width: int = 640) -> str:
    """Horizontal stacked bars (e.g. model, allocated and effort cost per workflow), with a legend."""
    n = max(len(chart.labels), 1)
    row, left, top = 24, 190, 46
    height = top + n * row + 10
    names = list(chart.series)
    totals = [sum(_num(chart.series[s][i]) for s in names) for i in range(len(chart.labels))]
    vmax = max(totals, default=0.0) or 1.0
    span = width - left - 90
    body = [_text(0, 16, chart.title, weight="bold", size=13)]
    x = 0.0
    for k, s in enumerate(names):
        body.append(f'<rect x="{x:.1f}" y="24" width="10" height="10" fill="{PALETTE[k % len(PALETTE)]}"/>')
        body.append(_text(x + 14, 33, s, size=11))
        x += 24 + 7 * len(s)
    for i, label in enumerate(chart.labels):
        y = top + i * row
        x0 = float(left)
        body.append(_text(left - 8, y + 15, _short(label), anchor="end"))
        for k, s in enumerate(names):
            v = max(_num(chart.series[s][i]), 0.0)
            w = v / vmax * span
            if w > 0:
                body.append(
                    f'<rect x="{x0:.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" '
                    f'fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(label)} {escape(s)}: '
                    f"{fmt(v, chart.unit)}</title></rect>"
                )
            x0 += w
        # a part that is a word ("unpriced") makes the total unknown: say so, never a partial sum
        words = [chart.series[s][i] for s in names if isinstance(chart.series[s][i], str)]
        total = words[0] if words else totals[i]
        body.append(_text(x0 + 6, y + 15, fmt(total, chart.unit), fill=MUTED))
    return _svg(width, height, chart.title, body)


def line(chart: Chart, width: int = 640, height: int = 220) -> str:
    """One line per series over the labels (time buckets), with a y axis in the chart's unit."""
    left, right, top, bottom = 64, 12, 46, 28
    names = list(chart.series)
    n = len(chart.labels)
    vmax = max((_num(v) for s in names for v in chart.series[s]), default=0.0) or 1.0
    ph, pw = height - top - bottom, width - left - right
    body = [_text(0, 16, chart.title, weight="bold", size=13)]
    x = float(left)
    for k, s in enumerate(names):
        body.append(f'<rect x="{x:.1f}" y="24" width="10" height="10" fill="{PALETTE[k % len(PALETTE)]}"/>')
        body.append(_text(x + 14, 33, s, size=11))
        x += 24 + 7 * len(s)
    for j in range(3):
        v = vmax * (j + 1) / 3
        y = top + ph - ph * (j + 1) / 3
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(_text(left - 6, y + 4, fmt(v, chart.unit), anchor="end", fill=MUTED, size=10))
    body.append(f'<line x1="{left}" x2="{width - right}" y1="{top + ph}" y2="{top + ph}" stroke="{MUTED}"/>')

    def px(i: int) -> float:
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    for i in sorted({0, n // 2, n - 1}) if n else []:
        where = "end" if i == n - 1 and n > 1 else "start" if i == 0 and n > 1 else "middle"
        body.append(_text(px(i), height - 8, chart.labels[i], anchor=where, fill=MUTED, size=10))
    for k, s in enumerate(names):
        pts = " ".join(
            f"{px(i):.1f},{top + ph - _num(v) / vmax * ph:.1f}" for i, v in enumerate(chart.series[s])
        )
        colour = PALETTE[k % len(PALETTE)]
        if n == 1:
            x0, y0 = pts.split(",")
            body.append(f'<circle cx="{x0}" cy="{y0}" r="3" fill="{colour}"/>')
        elif pts:
            body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
    return _svg(width, height, chart.title, body)


def funnel(chart: Chart, width: int = 640) -> str:
    """The conversion chain: one centred bar per stage (width = count), cost per unit beside it."""
    n = max(len(chart.labels), 1)
    row, top = 34, 28
    height = top + n * row + 6
    vmax = max((_num(v) for v in chart.values), default=0.0) or 1.0
    mid, span = 320.0, 300.0
    body = [_text(0, 16, chart.title, weight="bold", size=13)]
    for i, label in enumerate(chart.labels):
        y = top + i * row
        v = chart.values[i] if i < len(chart.values) else None
        w = max(_num(v) / vmax * span, 2.0) if v is not None else 0.0
        colour = PALETTE[i % len(PALETTE)]
        body.append(_text(8, y + 19, _short(label, 20)))
        if v is None:
            body.append(_text(mid, y + 19, "not recorded", anchor="middle", fill=MUTED))
        else:
            body.append(
                f'<rect x="{mid - w / 2:.1f}" y="{y + 4}" width="{w:.1f}" height="{row - 10}" rx="3" '
                f'fill="{colour}"><title>{escape(label)}: {fmt(v, "count")}</title></rect>'
            )
            body.append(
                _text(
                    mid,
                    y + 20,
                    fmt(v, "count"),
                    anchor="middle",
                    fill="#ffffff" if w > 60 else INK,
                    weight="bold",
                )
            )
        cost = chart.costs[i] if i < len(chart.costs) else None
        if isinstance(cost, str):  # e.g. "unpriced": the cost is not known, never $0
            body.append(_text(width - 4, y + 19, f"cost {cost}", anchor="end", fill=MUTED))
        elif cost is not None:
            body.append(_text(width - 4, y + 19, f"{fmt(cost, 'usd')} each", anchor="end", fill=MUTED))
    return _svg(width, height, chart.title, body)


def interval(chart: Chart, width: int = 640) -> str:
    """Point estimates with their intervals, and a reference line (e.g. the workflow mean)."""
    n = max(len(chart.labels), 1)
    row, left, top = 24, 190, 30
    height = top + n * row + 24
    vals = [_num(v) for v in [*chart.values, *chart.lows, *chart.highs] if v is not None]
    if chart.reference is not None:
        vals.append(chart.reference)
    vmin, vmax = min(vals, default=0.0), max(vals, default=1.0)
    if vmax == vmin:
        vmax = vmin + 1.0
    span = width - left - 70

    def px(v: float) -> float:
        return left + (v - vmin) / (vmax - vmin) * span

    body = [_text(0, 16, chart.title, weight="bold", size=13)]
    if chart.reference is not None:
        x = px(chart.reference)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{top + n * row}" stroke="{MUTED}" '
            'stroke-dasharray="4 3"/>'
        )
        body.append(
            _text(
                x,
                top + n * row + 16,
                chart.reference_label or fmt(chart.reference, chart.unit),
                anchor="middle",
                fill=MUTED,
                size=10,
            )
        )
    for i, label in enumerate(chart.labels):
        y = top + i * row + row / 2
        body.append(_text(left - 8, y + 4, _short(label), anchor="end"))
        lo = chart.lows[i] if i < len(chart.lows) else None
        hi = chart.highs[i] if i < len(chart.highs) else None
        if lo is not None and hi is not None:
            body.append(
                f'<line x1="{px(_num(lo)):.1f}" x2="{px(_num(hi)):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{PALETTE[0]}" stroke-width="2"/>'
            )
        v = chart.values[i] if i < len(chart.values) else None
        if v is not None:
            body.append(
                f'<circle cx="{px(_num(v)):.1f}" cy="{y:.1f}" r="4" fill="{PALETTE[0]}">'
                f"<title>{escape(label)}: {fmt(v, chart.unit)}</title></circle>"
            )
            body.append(_text(width - 4, y + 4, fmt(v, chart.unit), anchor="end", fill=MUTED))
    return _svg(width, height, chart.title, body)


DRAW = {
    "bar": bar,
    "grouped": grouped,
    "stacked": stacked,
    "line": line,
    "funnel": funnel,
    "interval": interval,
}


def draw(chart: Chart, width: int = 640) -> str:
    """The chart as an inline ``<svg>`` element."""
    if not chart.labels:
        return _svg(
            width,
            40,
            chart.title,
            [
                _text(0, 16, chart.title, weight="bold", size=13),
                _text(0, 34, "no data in this period", fill=MUTED),
            ],
        )
    return DRAW[chart.kind](chart, width)
