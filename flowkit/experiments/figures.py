"""Report figures with PIL only: labelled panels side by side over a quality-versus-NFE
line chart (for instance sample grids of a 1-RF and its 2-RF, and their FID at each NFE).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from flowkit.data.plots import save_image

__all__ = ["save_report_figure"]

_COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]
_MARGIN = 12
_TITLE = 18
_CHART_HEIGHT = 300
_AXIS = (60, 30, 20, 40)  # left, top, right, bottom padding of the plot area


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _row_of_panels(panels: Sequence[tuple[str, Image.Image]]) -> Image.Image:
    width = sum(p.width for _, p in panels) + _MARGIN * (len(panels) + 1)
    height = max(p.height for _, p in panels) + _TITLE + 2 * _MARGIN
    canvas = Image.new("RGB", (width, height), "white")
    draw, left = ImageDraw.Draw(canvas), _MARGIN
    for title, picture in panels:
        draw.text((left, _MARGIN // 2), title, fill="black", font=_font())
        canvas.paste(picture.convert("RGB"), (left, _MARGIN + _TITLE))
        left += picture.width + _MARGIN
    return canvas


def _ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        return [
            10.0**k for k in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        ]
    step = (high - low) / 4 or 1.0
    return [low + k * step for k in range(5)]


def _chart(
    curves: dict[str, Sequence[tuple[float, float]]], width: int, ylabel: str, log_y: bool
) -> Image.Image:
    """Lines of ``y`` against ``x`` (log2 x axis: NFE 1, 2, 4, ...), log ``y`` if asked."""
    canvas = Image.new("RGB", (width, _CHART_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = _AXIS
    x0, y0, x1, y1 = left, top, width - right, _CHART_HEIGHT - bottom
    points = [p for series in curves.values() for p in series if p[1] > 0 or not log_y]
    if not points:
        return canvas
    xs = sorted({p[0] for p in points})
    ys = [p[1] for p in points]
    fy = math.log10 if log_y else (lambda v: v)
    ticks = _ticks(min(ys), max(ys), log_y) if log_y else _ticks(min(0.0, min(ys)), max(ys), False)
    y_low, y_high = fy(ticks[0]), fy(ticks[-1])
    x_low, x_high = math.log2(xs[0]), max(math.log2(xs[-1]), math.log2(xs[0]) + 1)

    def at(x: float, y: float) -> tuple[float, float]:
        u = (math.log2(x) - x_low) / (x_high - x_low)
        v = (fy(y) - y_low) / ((y_high - y_low) or 1.0)
        return x0 + u * (x1 - x0), y1 - v * (y1 - y0)

    draw.rectangle((x0, y0, x1, y1), outline=(120, 120, 120))
    for tick in ticks:
        _, py = at(xs[0], tick)
        draw.line((x0, py, x1, py), fill=(225, 225, 225))
        draw.text((4, py - 6), f"{tick:g}", fill="black", font=_font())
    for x in xs:
        px, _ = at(x, ticks[0])
        draw.text((px - 4, y1 + 6), f"{x:g}", fill="black", font=_font())
    draw.text(((x0 + x1) // 2 - 10, y1 + 22), "NFE", fill="black", font=_font())
    draw.text((x0, 8), ylabel, fill="black", font=_font())
    for k, (name, series) in enumerate(curves.items()):
        color = _COLORS[k % len(_COLORS)]
        line = [at(x, y) for x, y in sorted(series) if y > 0 or not log_y]
        if len(line) > 1:
            draw.line(line, fill=color, width=2)
        for px, py in line:
            draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=color)
        draw.text((x1 - 150, y0 + 8 + 14 * k), f"-- {name}", fill=color, font=_font())
    return canvas


def save_report_figure(
    panels: Sequence[tuple[str, Image.Image]],
    curves: dict[str, Sequence[tuple[float, float]]],
    path: str | os.PathLike,
    ylabel: str = "FID",
    log_y: bool = True,
) -> Path:
    """Titled ``panels`` in a row above a chart of ``curves`` (name -> [(nfe, value)]).

    Args:
        panels: ``(title, picture)`` pairs, e.g. from :func:`flowkit.data.plots.image_grid`.
        curves: points per series; non-positive values are left out of a log axis.
    """
    if not panels:
        raise ValueError("save_report_figure needs at least one panel")
    row = _row_of_panels(panels)
    chart = _chart(curves, row.width, ylabel, log_y)
    figure = Image.new("RGB", (row.width, row.height + chart.height), "white")
    figure.paste(row, (0, 0))
    figure.paste(chart, (0, row.height))
    return save_image(figure, path)
