"""Report figures with PIL only: labelled panels side by side over a quality-versus-NFE
line chart (for instance sample grids of a 1-RF and its 2-RF, and their FID at each NFE).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from flowkit.data.plots import save_image

__all__ = ["save_report_figure"]

_COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]
TEXT_SHARE = 0.03
"""Text height as a share of the figure height: legible at the figure's natural size."""


@dataclass(frozen=True)
class _Style:
    """Sizes that scale with the figure: the font, margins and the chart's padding."""

    font_size: int

    @property
    def font(self) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return ImageFont.load_default(size=self.font_size)

    @property
    def margin(self) -> int:
        return self.font_size

    @property
    def title(self) -> int:
        return round(1.6 * self.font_size)

    @property
    def axis(self) -> tuple[int, int, int, int]:  # left, top, right, bottom of the plot area
        return 5 * self.font_size, 2 * self.font_size, self.font_size, 3 * self.font_size


def _row_of_panels(panels: Sequence[tuple[str, Image.Image]], style: _Style) -> Image.Image:
    margin = style.margin
    width = sum(p.width for _, p in panels) + margin * (len(panels) + 1)
    height = max(p.height for _, p in panels) + style.title + 2 * margin
    canvas = Image.new("RGB", (width, height), "white")
    draw, left = ImageDraw.Draw(canvas), margin
    for title, picture in panels:
        draw.text((left, margin // 2), title, fill="black", font=style.font)
        canvas.paste(picture.convert("RGB"), (left, margin + style.title))
        left += picture.width + margin
    return canvas


def _ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        return [
            10.0**k for k in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        ]
    step = (high - low) / 4 or 1.0
    return [low + k * step for k in range(5)]


def _chart(
    curves: dict[str, Sequence[tuple[float, float]]],
    size: tuple[int, int],
    ylabel: str,
    log_y: bool,
    style: _Style,
) -> Image.Image:
    """Lines of ``y`` against ``x`` (log2 x axis: NFE 1, 2, 4, ...), log ``y`` if asked."""
    width, height = size
    canvas = Image.new("RGB", (width, height), "white")
    draw, font, em = ImageDraw.Draw(canvas), style.font, style.font_size
    left, top, right, bottom = style.axis
    x0, y0, x1, y1 = left, top, width - right, height - bottom
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
        draw.text((em // 3, py - em // 2), f"{tick:g}", fill="black", font=font)
    for x in xs:
        px, _ = at(x, ticks[0])
        draw.text((px - em // 3, y1 + em // 3), f"{x:g}", fill="black", font=font)
    draw.text(((x0 + x1) // 2 - em, y1 + 3 * em // 2), "NFE", fill="black", font=font)
    draw.text((x0, em // 3), ylabel, fill="black", font=font)
    dot = max(3, em // 4)
    for k, (name, series) in enumerate(curves.items()):
        color = _COLORS[k % len(_COLORS)]
        line = [at(x, y) for x, y in sorted(series) if y > 0 or not log_y]
        if len(line) > 1:
            draw.line(line, fill=color, width=max(2, em // 6))
        for px, py in line:
            draw.ellipse((px - dot, py - dot, px + dot, py + dot), fill=color)
        label = f"-- {name}"
        label_width = draw.textlength(label, font=font)
        draw.text((x1 - label_width - em, y0 + em // 2 + 6 * em // 5 * k), label, fill=color,
                  font=font)  # fmt: skip
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
    width = sum(p.width for _, p in panels)
    tallest = max(p.height for _, p in panels)
    chart_height = max(300, width // 3)
    style = _Style(max(14, round(TEXT_SHARE * (tallest + chart_height) / (1 - 3 * TEXT_SHARE))))
    row = _row_of_panels(panels, style)
    chart = _chart(curves, (row.width, chart_height), ylabel, log_y, style)
    figure = Image.new("RGB", (row.width, row.height + chart.height), "white")
    figure.paste(row, (0, 0))
    figure.paste(chart, (0, row.height))
    return save_image(figure, path)
