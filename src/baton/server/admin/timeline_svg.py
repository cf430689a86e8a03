"""The timeline of a grant's token family, drawn as SVG.

One row per pair: the refresh token's life as a wide bar, its access token's as a thin one under
it, the exchange as a ring, the leeway after it hatched, retries inside the leeway as amber
triangles, and the reuse that revoked the family as a red cross with a red line through every
row. Hovering shows times and reasons through `<title>` elements: the pages' Content Security
Policy allows no script, and none is needed. Colours are presentation attributes, not `style`
(the policy allows no inline style either). Every text is escaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

from baton.core.timeline import Bar, Kind, Mark, Span, Timeline
from baton.core.vocabulary import REUSE_CAUSES

WIDTH = 1000
LEFT = 96  # the row labels
RIGHT = 28
TOP = 64  # the legend and the time axis
ROW = 38
BOTTOM = 30

REFRESH = "#3a5bd9"
ACCESS = "#2f9e6b"
LEEWAY = "#e09f3e"
RETRY = "#e09f3e"
REUSE = "#d62828"
REVOKED = "#5c6370"
INK = "#1d2330"
MUTED = "#8a93a6"
GRID = "#e4e7ee"

_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
_DAY = 86_400


def when(instant: int) -> str:
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def minute(instant: int) -> str:
    """A time for a table cell, to the minute (the cell's title has the second)."""
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%d %H:%M")


# The times a stored security-event detail names, as Unix seconds (`baton.store.sql.lifecycle`
# writes "exchanged at 1796417966, leeway ended at 1796417996"): shown as dates, the stored text
# left as it is.
_DETAIL_TIMES = re.compile(r"\b(exchanged at|leeway ended at) (\d{1,11})\b")


def dated(detail: str | None) -> str:
    """A security event's detail with the Unix times of its known phrases written as UTC dates
    (plain text: the caller escapes it as any text)."""
    if not detail:
        return ""
    return _DETAIL_TIMES.sub(lambda m: f"{m[1]} {when(int(m[2]))}", detail)


def duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min" + (f" {seconds % 60} s" if seconds % 60 else "")
    if seconds < 2 * _DAY:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / _DAY:.1f} days"


@dataclass(frozen=True)
class _Scale:
    start: int
    end: int

    @property
    def span(self) -> int:
        return max(self.end - self.start, 1)

    def x(self, instant: int) -> float:
        clipped = min(max(instant, self.start), self.end)
        return LEFT + (clipped - self.start) * (WIDTH - LEFT - RIGHT) / self.span

    def ticks(self) -> list[int]:
        step = next((s for s in _STEPS if self.span / s <= 8), _DAY)
        while self.span / step > 8:
            step += _DAY
        first = -(-self.start // step) * step
        return list(range(first, self.end + 1, step))

    def label(self, instant: int) -> str:
        moment = datetime.fromtimestamp(instant, UTC)
        if self.span > 2 * _DAY:
            return moment.strftime("%b %d %H:%M")
        return moment.strftime("%H:%M:%S" if self.span < 600 else "%H:%M")


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title>"


def _attrs(**values: float) -> str:
    return " ".join(
        f"{name}={quoteattr(f'{v:.1f}'.removesuffix('.0'))}" for name, v in values.items()
    )


def render(timeline: Timeline) -> str:
    """The SVG document (also valid inline in an HTML page)."""
    # A little room after the last event, so a mark at the right edge is not cut in half.
    pad = max(timeline.end - timeline.start, 60) // 40
    scale = _Scale(timeline.start, timeline.end + pad)
    height = TOP + ROW * max(len(timeline.bars), 1) + BOTTOM
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {WIDTH} {height}"'
        f' width="{WIDTH}" height="{height}" role="img" font-family="system-ui, sans-serif"'
        f' font-size="12">',
        _title(f"Token family of grant {timeline.grant.id} ({timeline.status})"),
        "<defs>"
        '<pattern id="leeway-hatch" width="6" height="6" patternUnits="userSpaceOnUse"'
        ' patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="#fbe9cf"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{LEEWAY}" stroke-width="3"/>'
        "</pattern></defs>",
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    parts += _legend()
    parts += _axis(scale, height)
    for row, bar in enumerate(timeline.bars):
        parts += _bar(scale, bar, TOP + row * ROW, timeline.now)
    parts += _family_marks(scale, timeline, height)
    if timeline.start <= timeline.now <= scale.end:
        x = scale.x(timeline.now)
        parts.append(
            f'<g class="now"><line {_attrs(x1=x, y1=TOP - 8, x2=x, y2=height - BOTTOM + 4)}'
            f' stroke="{INK}" stroke-width="1" stroke-dasharray="3 3"/>'
            f'<text {_attrs(x=x + 4, y=height - 8)} fill="{INK}">now</text>'
            f"{_title('now: ' + when(timeline.now))}</g>"
        )
    if timeline.omitted:
        parts.append(
            f'<text x="{LEFT}" y="{height - 8}" fill="{MUTED}">'
            f"{timeline.omitted} older pair(s) not drawn</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _legend() -> list[str]:
    items: list[tuple[str, str]] = [
        (f'<rect x="0" y="-9" width="22" height="10" rx="2" fill="{REFRESH}"/>', "refresh token"),
        (f'<rect x="0" y="-5" width="22" height="4" rx="1" fill="{ACCESS}"/>', "access token"),
        (
            f'<rect x="0" y="-9" width="22" height="10" fill="url(#leeway-hatch)"'
            f' stroke="{LEEWAY}"/>',
            "leeway",
        ),
        (
            f'<circle cx="11" cy="-4" r="5" fill="#ffffff" stroke="{INK}" stroke-width="2"/>',
            "exchange",
        ),
        (f'<path d="M5 0 L11 -10 L17 0 Z" fill="{RETRY}"/>', "retry in the leeway"),
        (_cross(11, -4, 5), "reuse: family revoked"),
    ]
    out = ['<g class="legend" transform="translate(16 22)">']
    x = 0
    for glyph, label in items:
        out.append(
            f'<g transform="translate({x} 0)">{glyph}'
            f'<text x="28" y="0" fill="{INK}">{escape(label)}</text></g>'
        )
        x += 36 + 7 * len(label)
    out.append("</g>")
    return out


def _axis(scale: _Scale, height: int) -> list[str]:
    out = ['<g class="axis">']
    for tick in scale.ticks():
        x = scale.x(tick)
        out.append(
            f'<line {_attrs(x1=x, y1=TOP - 12, x2=x, y2=height - BOTTOM)} stroke="{GRID}"/>'
            f'<text {_attrs(x=x, y=TOP - 16)} text-anchor="middle" fill="{MUTED}">'
            f"{escape(scale.label(tick))}</text>"
        )
    out.append("</g>")
    return out


def _cross(x: float, y: float, r: float) -> str:
    return (
        f'<path d="M{x - r:.1f} {y - r:.1f} L{x + r:.1f} {y + r:.1f} M{x - r:.1f} {y + r:.1f}'
        f' L{x + r:.1f} {y - r:.1f}" stroke="{REUSE}" stroke-width="3" stroke-linecap="round"/>'
    )


def _span_title(what: str, span: Span, now: int) -> str:
    verb = "dies" if span.end > now else "died"
    return (
        f"{what}\nissued {when(span.start)}\n{verb} {when(span.end)} "
        f"(after {duration(span.end - span.start)}): {span.cause}"
    )


def _bar(scale: _Scale, bar: Bar, y: int, now: int) -> list[str]:
    label = f"gen {bar.generation}"
    out = [
        f'<g class="pair" data-generation="{bar.generation}">',
        f'<text {_attrs(x=LEFT - 12, y=y + 17)} text-anchor="end" fill="{INK}"'
        f' font-weight="600">{escape(label)}</text>',
    ]
    if bar.refresh is not None:
        out.append(_rect(scale, bar.refresh, y + 6, 14, REFRESH, "bar-refresh", now, label))
    if bar.leeway is not None:
        x0, x1 = scale.x(bar.leeway.start), scale.x(bar.leeway.end)
        title = (
            f"{label} leeway: from the exchange at {when(bar.leeway.start)} to "
            f"{when(bar.leeway.end)} ({duration(bar.leeway.end - bar.leeway.start)}); a retry "
            "in it gets the same pair again"
        )
        out.append(
            f'<rect class="leeway" {_attrs(x=x0, y=y + 6, width=max(x1 - x0, 2), height=14)}'
            f' fill="url(#leeway-hatch)" stroke="{LEEWAY}">{_title(title)}</rect>'
        )
    if bar.access is not None:
        out.append(_rect(scale, bar.access, y + 23, 5, ACCESS, "bar-access", now, label))
    for mark in bar.marks:
        out.append(_mark(scale, mark, y))
    out.append("</g>")
    return out


def _rect(
    scale: _Scale, span: Span, y: int, h: int, colour: str, cls: str, now: int, label: str
) -> str:
    x0, x1 = scale.x(span.start), scale.x(span.end)
    what = "refresh token" if cls == "bar-refresh" else "access token"
    cut = span.end > scale.end
    title = _span_title(f"{label} {what}", span, now)
    faded = ' fill-opacity="0.55"' if cut else ""
    out = (
        f'<rect class="{cls}" {_attrs(x=x0, y=y, width=max(x1 - x0, 2), height=h)} rx="2"'
        f' fill="{colour}"{faded}>{_title(title)}</rect>'
    )
    if cut:  # it lives on past the right edge: an arrow says so
        out += (
            f'<path class="continues" d="M{x1 - 1:.1f} {y - 2} L{x1 + 7:.1f} {y + h / 2:.1f}'
            f' L{x1 - 1:.1f} {y + h + 2}" fill="{colour}">{_title(title)}</path>'
        )
    return out


def _mark(scale: _Scale, mark: Mark, y: int) -> str:
    x = scale.x(mark.at)
    gen = f"gen {mark.generation} " if mark.generation is not None else ""
    if mark.kind is Kind.EXCHANGE:
        title = f"{gen}exchanged at {when(mark.at)}: the next pair was issued"
        return (
            f'<circle class="exchange" {_attrs(cx=x, cy=y + 13, r=6)} fill="#ffffff"'
            f' stroke="{INK}" stroke-width="2">{_title(title)}</circle>'
        )
    if mark.kind is Kind.RETRY:
        title = f"{gen}retried inside the leeway at {when(mark.at)}: {dated(mark.note)}"
        return (
            f'<path class="retry" d="M{x - 6:.1f} {y + 4} L{x:.1f} {y - 7} L{x + 6:.1f} {y + 4} Z"'
            f' fill="{RETRY}" stroke="#ffffff">{_title(title)}</path>'
        )
    title = f"{gen}{mark.kind.value} at {when(mark.at)}: {dated(mark.note)}"
    return f'<g class="reuse">{_cross(x, y + 13, 7)}{_title(title)}</g>'


def _family_marks(scale: _Scale, timeline: Timeline, height: int) -> list[str]:
    out = []
    for mark in timeline.marks:
        x = scale.x(mark.at)
        red = mark.kind is not Kind.REVOKED or timeline.grant.revoked_reason in REUSE_CAUSES
        colour = REUSE if red else REVOKED
        cls = "family-reuse" if red else "family-revoked"
        title = f"{mark.kind.value} at {when(mark.at)}: {dated(mark.note)}"
        if mark.kind is Kind.REVOKED:
            title = f"family revoked at {when(mark.at)}: {dated(mark.note)}"
        out.append(
            f'<g class="{cls}"><line {_attrs(x1=x, y1=TOP - 6, x2=x, y2=height - BOTTOM + 4)}'
            f' stroke="{colour}" stroke-width="2"/>'
            f'<text {_attrs(x=x - 4, y=height - BOTTOM + 16)} text-anchor="end" fill="{colour}"'
            f' font-weight="600">{escape(dated(mark.note))}</text>{_title(title)}</g>'
        )
    return out
