"""Charts as inline SVG, drawn on the server from figures already at hand (no JS, no library).

Each function returns Markup ready to drop into a template. The SVGs scale with their box
(viewBox + width 100%); colours come from CSS classes (`s0`..`s3`), so the stylesheet owns
the palette. Every drawn value is a `.mark` element with a <title> tooltip; tests count them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 58, 16, 14, 40


@dataclass
class Series:
    """One line: (x, y) points in x order; a None y leaves a gap."""

    name: str
    points: list[tuple[float, float | None]] = field(default_factory=list)
    dashed: bool = False


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (about `count` of them)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0) * 0.1
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks: list[float] = []
    value = first
    while value <= high + step * 0.5 and len(ticks) < 20:
        ticks.append(round(value, 12))
        value += step
    return ticks


def percent(value: float | None, digits: int = 1) -> str:
    """0.0123 -> '1.2%'; None -> '—'."""
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _empty(message: str) -> Markup:
    """What a chart shows before it has data."""
    return Markup(f'<div class="chart-empty" role="img" aria-label="{escape(message)}">{escape(message)}</div>')


def line_chart(
    series: Sequence[Series],
    *,
    label: str,
    y_format: Callable[[float], str] = lambda v: f"{v:.2f}",
    x_labels: dict[float, str] | None = None,
    x_title: str = "",
    y_floor: float | None = None,
    width: int = 520,
    height: int = 240,
    empty: str = "no data yet",
) -> Markup:
    """A line chart with markers; `x_labels` names categorical x positions (e.g. versions)."""
    points = [(x, y) for s in series for x, y in s.points if y is not None and math.isfinite(y)]
    if not points:
        return _empty(empty)
    xs = [x for x, _ in points] + list(x_labels or {})
    ys = [y for _, y in points]
    x_low, x_high = min(xs), max(xs)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    y_low, y_high = min(ys), max(ys)
    if y_floor is not None:
        y_low = min(y_low, y_floor)
    span = (y_high - y_low) or (abs(y_high) or 1.0) * 0.2
    y_low, y_high = y_low - span * 0.08, y_high + span * 0.08
    if y_floor is not None:
        y_low = max(y_low, y_floor)
    y_ticks = [t for t in nice_ticks(y_low, y_high) if y_low - 1e-12 <= t <= y_high + 1e-12] or [y_low]
    plot_w = width - PAD_LEFT - PAD_RIGHT
    plot_h = height - PAD_TOP - PAD_BOTTOM

    def sx(x: float) -> float:
        return PAD_LEFT + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y: float) -> float:
        return PAD_TOP + (1 - (y - y_low) / (y_high - y_low)) * plot_h

    out = [f'<svg class="chart line-chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">']
    for tick in y_ticks:
        tick_y = sy(tick)
        out.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{tick_y:.1f}" y2="{tick_y:.1f}"/>')
        out.append(
            f'<text class="tick" x="{PAD_LEFT - 6}" y="{tick_y + 4:.1f}" text-anchor="end">'
            f"{escape(y_format(tick))}</text>"
        )
    if x_labels:
        x_ticks = sorted(x_labels.items())
    else:
        x_ticks = [
            (t, f"{t:g}") for t in nice_ticks(x_low, x_high, 6) if x_low <= t <= x_high and float(t).is_integer()
        ]
    for tick_x, text in x_ticks:
        out.append(
            f'<text class="tick" x="{sx(tick_x):.1f}" y="{height - PAD_BOTTOM + 18}" '
            f'text-anchor="middle">{escape(text)}</text>'
        )
    out.append(
        f'<line class="axis" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" '
        f'y1="{height - PAD_BOTTOM}" y2="{height - PAD_BOTTOM}"/>'
    )
    if x_title:
        out.append(
            f'<text class="axis-title" x="{PAD_LEFT + plot_w / 2}" y="{height - 3}" '
            f'text-anchor="middle">{escape(x_title)}</text>'
        )
    for index, one in enumerate(series):
        css = f"s{index % 4}"
        runs: list[list[tuple[float, float]]] = [[]]
        for x, y in one.points:
            if y is None or not math.isfinite(y):
                runs.append([])
            else:
                runs[-1].append((sx(x), sy(y)))
        dash = ' stroke-dasharray="5 4"' if one.dashed else ""
        for run in runs:
            if len(run) > 1:
                path = " ".join(f"{px:.1f},{py:.1f}" for px, py in run)
                out.append(f'<polyline class="line {css}" points="{path}"{dash}/>')
        for x, y in one.points:
            if y is None or not math.isfinite(y):
                continue
            name = (x_labels or {}).get(x, f"{x:g}")
            out.append(
                f'<circle class="mark {css}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5">'
                f"<title>{escape(one.name)} @ {escape(name)}: {escape(y_format(y))}</title></circle>"
            )
    out.append("</svg>")
    legend = "".join(
        f'<span class="key"><i class="swatch s{index % 4}{" dashed" if one.dashed else ""}"></i>'
        f"{escape(one.name)}</span>"
        for index, one in enumerate(series)
        if any(y is not None for _, y in one.points)
    )
    return Markup(f'<figure class="chart-box">{"".join(out)}<figcaption class="legend">{legend}</figcaption></figure>')


@dataclass
class BarGroup:
    """One category of a horizontal bar chart: a value per series (None: no bar)."""

    label: str
    values: list[float | None]
    note: str = ""


def bar_chart(
    groups: Sequence[BarGroup],
    *,
    series_names: Sequence[str],
    label: str,
    value_format: Callable[[float], str] = percent,
    width: int = 560,
    row_height: int = 18,
    empty: str = "no data",
) -> Markup:
    """Horizontal grouped bars (one row per group, one bar per series), value at the bar end."""
    values = [v for g in groups for v in g.values if v is not None]
    if not groups or not values:
        return _empty(empty)
    pad_left, pad_right = 120, 66
    bars = len(series_names)
    group_h = bars * row_height + 10
    height = PAD_TOP + group_h * len(groups) + 8
    high = max(values) or 1.0
    plot_w = width - pad_left - pad_right
    out = [f'<svg class="chart bar-chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">']
    for tick in nice_ticks(0, high, 4):
        if tick > high * 1.0001:
            continue
        x = pad_left + tick / high * plot_w
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_TOP - 4}" y2="{height - 6}"/>')
    for row, group in enumerate(groups):
        top = PAD_TOP + row * group_h
        out.append(
            f'<text class="tick{" new-class" if group.note else ""}" x="{pad_left - 8}" '
            f'y="{top + group_h / 2 + 2:.1f}" text-anchor="end">{escape(group.label)}'
            f"{escape(group.note)}</text>"
        )
        for index, value in enumerate(group.values):
            if value is None:
                continue
            y = top + index * row_height
            w = max(value / high * plot_w, 1.0)
            out.append(
                f'<rect class="mark bar s{index % 4}" x="{pad_left}" y="{y:.1f}" width="{w:.1f}" '
                f'height="{row_height - 3}"><title>{escape(group.label)}, '
                f"{escape(series_names[index])}: {escape(value_format(value))}</title></rect>"
            )
            out.append(
                f'<text class="value" x="{pad_left + w + 4:.1f}" y="{y + row_height - 5:.1f}">'
                f"{escape(value_format(value))}</text>"
            )
    out.append("</svg>")
    legend = (
        "".join(
            f'<span class="key"><i class="swatch s{i % 4}"></i>{escape(name)}</span>'
            for i, name in enumerate(series_names)
        )
        if bars > 1
        else ""
    )
    return Markup(f'<figure class="chart-box">{"".join(out)}<figcaption class="legend">{legend}</figcaption></figure>')


@dataclass
class ScatterPoint:
    """One point of a scatter chart; `role` is `candidate`, `winner` or `reference`."""

    name: str
    x: float
    y: float
    role: str = "candidate"


def scatter_chart(
    points: Sequence[ScatterPoint],
    *,
    label: str,
    x_title: str,
    y_title: str,
    x_format: Callable[[float], str] = lambda v: f"{v:.2f}",
    y_format: Callable[[float], str] = lambda v: f"{v:.2f}",
    width: int = 520,
    height: int = 280,
    empty: str = "no data",
) -> Markup:
    """Points on two value axes, each named beside its mark; the winner is ringed, the
    reference drawn as a diamond. Marks carry `data-role` and a <title> tooltip."""
    points = [p for p in points if math.isfinite(p.x) and math.isfinite(p.y)]
    if not points:
        return _empty(empty)

    def padded(values: list[float]) -> tuple[float, float]:
        low, high = min(values), max(values)
        span = (high - low) or (abs(high) or 1.0) * 0.2
        return low - span * 0.12, high + span * 0.12

    x_low, x_high = padded([p.x for p in points])
    y_low, y_high = padded([p.y for p in points])
    x_low = max(x_low, 0.0) if min(p.x for p in points) >= 0 else x_low
    pad_left = PAD_LEFT + 18  # room for the rotated y-axis title beside the tick labels
    plot_w = width - pad_left - PAD_RIGHT
    plot_h = height - PAD_TOP - PAD_BOTTOM

    def sx(x: float) -> float:
        return pad_left + (x - x_low) / (x_high - x_low) * plot_w

    def sy(y: float) -> float:
        return PAD_TOP + (1 - (y - y_low) / (y_high - y_low)) * plot_h

    out = [f'<svg class="chart scatter-chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">']
    for tick in (t for t in nice_ticks(y_low, y_high) if y_low <= t <= y_high):
        y = sy(tick)
        out.append(f'<line class="grid" x1="{pad_left}" x2="{width - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(
            f'<text class="tick" x="{pad_left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(y_format(tick))}</text>'
        )
    for tick in (t for t in nice_ticks(x_low, x_high, 6) if x_low <= t <= x_high):
        x = sx(tick)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_TOP}" y2="{height - PAD_BOTTOM}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{height - PAD_BOTTOM + 16}" '
            f'text-anchor="middle">{escape(x_format(tick))}</text>'
        )
    out.append(
        f'<line class="axis" x1="{pad_left}" x2="{width - PAD_RIGHT}" '
        f'y1="{height - PAD_BOTTOM}" y2="{height - PAD_BOTTOM}"/>'
    )
    out.append(
        f'<text class="axis-title" x="{pad_left + plot_w / 2}" y="{height - 4}" text-anchor="middle">'
        f"{escape(x_title)}</text>"
    )
    out.append(
        f'<text class="axis-title" x="12" y="{PAD_TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {PAD_TOP + plot_h / 2})">{escape(y_title)}</text>'
    )
    placed: list[tuple[float, float]] = []  # label anchors drawn so far
    # The reference first, so candidates drawn at the same spot stay on top of it.
    for point in sorted(points, key=lambda p: p.role != "reference"):
        x, y = sx(point.x), sy(point.y)
        tip = (
            f"<title>{escape(point.name)}: {escape(y_title)} {escape(y_format(point.y))}, "
            f"{escape(x_title)} {escape(x_format(point.x))}</title>"
        )
        role = escape(point.role)
        if point.role == "reference":
            out.append(
                f'<polygon class="mark reference" data-role="{role}" data-name="{escape(point.name)}" '
                f'points="{x:.1f},{y - 7:.1f} {x + 7:.1f},{y:.1f} {x:.1f},{y + 7:.1f} {x - 7:.1f},{y:.1f}">'
                f"{tip}</polygon>"
            )
        else:
            if point.role == "winner":
                out.append(f'<circle class="winner-ring" cx="{x:.1f}" cy="{y:.1f}" r="10"/>')
            out.append(
                f'<circle class="mark {role}" data-role="{role}" data-name="{escape(point.name)}" '
                f'cx="{x:.1f}" cy="{y:.1f}" r="5">{tip}</circle>'
            )
        anchor = "start" if x < width - PAD_RIGHT - 90 else "end"
        label_x, label_y = x + (9 if anchor == "start" else -9), y - 8
        # Candidates with (nearly) the same figures: stack their names instead of overprinting.
        while any(abs(label_x - px) < 70 and abs(label_y - py) < 13 for px, py in placed):
            label_y += 14
        placed.append((label_x, label_y))
        out.append(
            f'<text class="point-label {role}" x="{label_x:.1f}" y="{label_y:.1f}" text-anchor="{anchor}">'
            f"{escape(point.name)}</text>"
        )
    out.append("</svg>")
    legend = (
        '<span class="key"><i class="swatch candidate-key"></i>candidate</span>'
        '<span class="key"><i class="swatch winner-key"></i>chosen (registered)</span>'
        '<span class="key"><i class="swatch reference-key"></i>independent retrain</span>'
    )
    return Markup(f'<figure class="chart-box">{"".join(out)}<figcaption class="legend">{legend}</figcaption></figure>')
