"""Charts drawn by the server as SVG inside the page: no script, no chart library, no font of its own
(the browser's fonts draw the names, so Chinese renders wherever the page does).

Bars are labelled with the places' and cadres' names, each bar a link to the cases behind its figure.
The layout is one bar per row under its label, so a 390 px phone reads the labels at full size
instead of a shrunk side column. Colours come from the stylesheet (classes), as the Content-Security-
Policy allows no inline style."""
from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 360          # viewBox units; the SVG scales to the column's width
ROW = 40
BAR_TOP, BAR_HEIGHT = 20, 12


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None          # a share in [0, 1]; None: no figure (drawn as a note, not a zero bar)
    href: str | None = None
    shown: str = ""              # the value as words, e.g. "92.5%"


def bars(title: str, items: list[Bar], none_text: str = "—") -> Markup:
    """A horizontal bar chart of shares (0–100 %), one row per item, in the order given."""
    height = ROW * len(items) + 8
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="100%" '
             f'preserveAspectRatio="xMinYMin meet" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    track = WIDTH - 70
    for i, item in enumerate(items):
        y = i * ROW + 4
        value = None if item.value is None else max(0.0, min(1.0, float(item.value)))
        row = [f'<text class="chart-label" x="0" y="{y + 14}">{escape(item.label)}</text>',
               f'<rect class="chart-track" x="0" y="{y + BAR_TOP}" width="{track}" height="{BAR_HEIGHT}"/>']
        if value is not None:
            row.append(f'<rect class="chart-bar" x="0" y="{y + BAR_TOP}" width="{round(track * value, 1)}" '
                       f'height="{BAR_HEIGHT}"/>')
        row.append(f'<text class="chart-value" x="{track + 6}" y="{y + BAR_TOP + BAR_HEIGHT - 1}">'
                   f'{escape(item.shown if value is not None else none_text)}</text>')
        body = "".join(row)
        if item.href:
            body = f'<a href="{escape(item.href)}">{body}</a>'
        parts.append(body)
    parts.append("</svg>")
    return Markup("".join(parts))
