"""Charts as inline SVG, drawn on the server: no chart library, nothing for the browser to load.

One chart is a few series over shared labels, drawn as lines or as stacked bars, with its axes,
a legend and a ``<title>`` for screen readers; each page also shows the numbers as a table.
Colours are the Okabe-Ito palette, told apart with any colour vision.

>>> svg = chart("Requests", ["10:00", "10:01"], {"GET": [3, 5]})
>>> svg.startswith("<svg") and "<title>Requests</title>" in svg
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

from markupsafe import Markup, escape

__all__ = ["PALETTE", "chart"]

#: Okabe and Ito's colour-blind-safe palette.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 640, 220, 48, 12, 12, 40


def _nice(top: float) -> float:
    """A round axis maximum at or above ``top``."""
    if top <= 0:
        return 1.0
    step = 10 ** math.floor(math.log10(top))
    return next(m * step for m in (1, 2, 2.5, 5, 10) if m * step >= top)


def _fmt(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *,
          kind: Literal["line", "bars", "grouped"] = "line") -> Markup:
    """An SVG chart of ``series`` (name → one value per label; None: no value there): lines,
    stacked bars, or bars side by side (``grouped``)."""
    n = max(len(labels), 1)
    if kind == "bars":
        totals = [sum(v[i] or 0 for v in series.values()) for i in range(len(labels))]
        top = _nice(max(totals, default=0))
    else:
        top = _nice(max((v for s in series.values() for v in s if v is not None), default=0))
    width, height = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(i: float) -> float:
        return _LEFT + width * (i + 0.5) / n

    def y(v: float) -> float:
        return _TOP + height * (1 - v / top)

    parts = [f'<svg class="chart" viewBox="0 0 {_W} {_H + 18 * _legend_rows(series)}" '
             f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    for tick in range(5):
        value = top * tick / 4
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y(value):.1f}" '
                     f'y2="{y(value):.1f}"/><text class="tick" x="{_LEFT - 4}" '
                     f'y="{y(value) + 4:.1f}" text-anchor="end">{_fmt(value)}</text>')
    every = max(1, math.ceil(len(labels) / 8))
    for i, label in enumerate(labels):
        if i % every == 0:
            parts.append(f'<text class="tick" x="{x(i):.1f}" y="{_H - _BOTTOM + 16}" '
                         f'text-anchor="middle">{escape(label)}</text>')
    base = [0.0] * len(labels)
    bar = width / n * 0.7
    slot = bar / max(len(series), 1)
    for index, (colour, (name, values)) in enumerate(zip(_colours(), series.items(),
                                                          strict=False)):
        for i, v in enumerate(values):
            if not v or kind == "line":
                continue
            tip = f"{name} {labels[i]}: {_fmt(v)}"
            if kind == "grouped":
                parts.append(_rect(x(i) - bar / 2 + index * slot, slot, y(v), y(0), colour, tip))
            else:
                parts.append(_rect(x(i) - bar / 2, bar, y(base[i] + v), y(base[i]), colour, tip))
                base[i] += v
        if kind == "line":
            points = [(x(i), y(v)) for i, v in enumerate(values) if v is not None]
            line = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" '
                         f'stroke-width="2"/>')
            parts.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>'
                         for px, py in points)
    parts.extend(_legend(series))
    parts.append("</svg>")
    return Markup("".join(parts))


def _rect(left: float, width: float, top: float, bottom: float, colour: str, tip: str) -> str:
    return (f'<rect x="{left:.1f}" y="{top:.1f}" width="{width:.1f}" height="{bottom - top:.1f}" '
            f'fill="{colour}"><title>{escape(tip)}</title></rect>')


def _colours() -> list[str]:
    return list(PALETTE) * 4


def _legend_rows(series: Mapping[str, object]) -> int:
    return math.ceil(len(series) / 4)


def _legend(series: Mapping[str, object]) -> list[str]:
    out = []
    for index, (colour, name) in enumerate(zip(_colours(), series, strict=False)):
        row, col = divmod(index, 4)
        left, top = _LEFT + col * 150, _H - 8 + row * 18
        out.append(f'<rect x="{left}" y="{top - 9}" width="10" height="10" fill="{colour}"/>'
                   f'<text class="legend" x="{left + 14}" y="{top}">{escape(name)}</text>')
    return out
