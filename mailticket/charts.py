"""Server-side SVG charts for the report page: no script, scaled by viewBox, named for screen readers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import date
from html import escape

from mailticket.i18n import N_

SVG_NS = "http://www.w3.org/2000/svg"
WIDTH = 640
TITLE_HEIGHT = 32
FONT_FAMILY = 'font-family="system-ui, sans-serif" fill="currentColor"'
FONT = FONT_FAMILY + ' font-size="12"'
TITLE_FONT = FONT_FAMILY + ' font-size="14" font-weight="bold"'
BAR_COLOR = "#3b6fb6"  # readable on light and dark backgrounds; the page CSS may override .bar / .line
BAR_HEIGHT, BAR_GAP = 22, 8
LABEL_WIDTH, VALUE_WIDTH = 170, 90
MAX_LABEL_CHARS = 24
LINE_HEIGHT = 260
PLOT_LEFT, PLOT_RIGHT, PLOT_BOTTOM = 48, 44, 36  # room for the value and date labels
MAX_X_LABELS = 6
POINT_RADIUS = 2.5
NICE_STEPS = (1, 2, 2.5, 5, 10)
# The words of a chart, in English; the report page passes them in its language (N_: in the catalog).
NO_DATA = N_("No data")
LINE_SUMMARY = N_("%(points)s points from %(first)s to %(last)s; total %(total)s, highest %(highest)s on %(day)s")


def _text(value: object) -> str:
    """Escaped for XML text and attributes alike."""
    return escape(str(value), quote=True)


def _finite(value: float) -> float:
    return value if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else 0.0


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _with_unit(value: float, unit: str) -> str:
    if not unit:
        return _number(value)
    return f"{_number(value)}{unit}" if unit == "%" else f"{_number(value)} {unit}"


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def _open(title: str, summary: str, height: float) -> list[str]:
    # role="img" with aria-label: a screen reader announces the title and the figures in one phrase;
    # <title> gives the same name to other tools and shows as a tooltip.
    label = f"{title}. {summary}" if summary else title
    return [f'<svg xmlns="{SVG_NS}" viewBox="0 0 {WIDTH} {height:.0f}" role="img" aria-label="{_text(label)}" '
            f'preserveAspectRatio="xMidYMid meet" class="chart">',
            f"<title>{_text(title)}</title>",
            f'<text x="0" y="18" {TITLE_FONT}>{_text(title)}</text>']


def _empty(title: str, no_data: str = NO_DATA) -> str:
    height = TITLE_HEIGHT + 40
    return "".join(_open(title, no_data, height)
                   + [f'<text x="{WIDTH / 2:.0f}" y="{height - 20:.0f}" text-anchor="middle" {FONT}>{_text(no_data)}</text>',
                      "</svg>"])


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], unit: str = "",
              shown: Callable[[float], str] | None = None, no_data: str = NO_DATA) -> str:
    """Horizontal bars, one per label, longest = largest value; `unit` follows each value ('%', 'tickets'), or
    `shown` writes each value (durations: mailticket.durations.compact of seconds)."""
    if len(labels) != len(values):
        raise ValueError(f"{len(labels)} labels for {len(values)} values")
    if not labels:
        return _empty(title, no_data)
    values = [_finite(v) for v in values]
    labels = [str(label) for label in labels]
    top = max(values)
    room = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    height = TITLE_HEIGHT + len(labels) * (BAR_HEIGHT + BAR_GAP)

    def write(value: float) -> str:
        return shown(value) if shown is not None else _with_unit(value, unit)

    summary = "; ".join(f"{label}: {write(v)}" for label, v in zip(labels, values))
    parts = _open(title, summary, height)
    for i, (label, value) in enumerate(zip(labels, values)):
        y = TITLE_HEIGHT + i * (BAR_HEIGHT + BAR_GAP)
        width = room * value / top if top else 0.0
        baseline = y + BAR_HEIGHT * 0.7
        text = write(value)
        parts.append(
            f"<g><title>{_text(label)}: {_text(text)}</title>"
            f'<text x="{LABEL_WIDTH - 8}" y="{baseline:.1f}" text-anchor="end" {FONT}>{_text(_short(label))}</text>'
            f'<rect class="bar" x="{LABEL_WIDTH}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" '
            f'fill="{BAR_COLOR}"/>'
            f'<text x="{LABEL_WIDTH + width + 6:.1f}" y="{baseline:.1f}" {FONT}>{_text(text)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least `value` (axis top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in NICE_STEPS if step * power >= value)


def line_chart(title: str, points: Sequence[tuple[str | date, float]], no_data: str = NO_DATA,
               summary: Callable[..., str] | None = None) -> str:
    """A line over evenly spaced points, such as tickets per day (label, value); labels thinned to fit. `summary`
    writes LINE_SUMMARY from its values (for a screen reader), in the page's language."""
    if not points:
        return _empty(title, no_data)
    labels = [p.isoformat() if isinstance(p, date) else str(p) for p, _ in points]
    values = [_finite(v) for _, v in points]
    top = _nice_ceiling(max(values))
    left, right = PLOT_LEFT, WIDTH - PLOT_RIGHT
    upper, lower = TITLE_HEIGHT + 8, LINE_HEIGHT - PLOT_BOTTOM
    step = (right - left) / (len(points) - 1) if len(points) > 1 else 0.0

    def x(i: int) -> float:
        return left + i * step if len(points) > 1 else (left + right) / 2

    def y(value: float) -> float:
        return lower - (lower - upper) * value / top

    said = dict(points=len(points), first=labels[0], last=labels[-1], total=_number(sum(values)),
                highest=_number(max(values)), day=labels[values.index(max(values))])
    parts = _open(title, summary(**said) if summary else LINE_SUMMARY % said, LINE_HEIGHT)
    for tick in (0.0, top / 2, top):  # grid lines with their values
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                     f'stroke="currentColor" stroke-opacity="0.2"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" {FONT}>{_number(tick)}</text>')
    every = math.ceil(len(points) / MAX_X_LABELS)
    for i in range(0, len(points), every):
        parts.append(f'<text x="{x(i):.1f}" y="{lower + 20}" text-anchor="middle" {FONT}>{_text(labels[i])}</text>')
    path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    parts.append(f'<polyline class="line" points="{path}" fill="none" stroke="{BAR_COLOR}" stroke-width="2"/>')
    for i, (label, value) in enumerate(zip(labels, values)):
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="{POINT_RADIUS}" fill="{BAR_COLOR}">'
                     f"<title>{_text(label)}: {_number(value)}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)
