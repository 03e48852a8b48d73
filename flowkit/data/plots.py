"""PNG previews of samples with PIL and numpy only: image grids, 2-D scatter plots and
2-D trajectories.

Every function writes atomically (:func:`flowkit.files.atomic_path`), creates missing
parent folders and returns the path written.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from flowkit.files import atomic_path

__all__ = [
    "image_grid",
    "save_image",
    "save_image_grid",
    "save_scatter",
    "save_trajectories",
    "scatter_image",
]

_MIN_TILE = 64
_PAD = 2
_PAD_VALUE = 128
_CANVAS = 512
_POINT_COLOR = (31, 119, 180)
_REFERENCE_COLOR = (200, 200, 200)
_FRAME_COLOR = (170, 170, 170)


def save_image(image: Image.Image, path: str | os.PathLike) -> Path:
    """Save a PIL image atomically in the format its extension names; returns the path."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format of {str(path)!r} from its extension")
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt)
    return path


def save_image_grid(x: Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Save images ``x`` of shape ``(B, C, H, W)``, ``C`` in {1, 3}, values in ``[-1, 1]``,
    as the grid :func:`image_grid` draws."""
    return save_image(image_grid(x, nrow), path)


def image_grid(x: Tensor, nrow: int | None = None) -> Image.Image:
    """Images ``x`` of shape ``(B, C, H, W)``, ``C`` in {1, 3}, values in ``[-1, 1]``, as
    one picture.

    Tiles are upscaled by the integer factor ``ceil(64 / max(H, W))`` with nearest
    neighbour (8x8 digits become 64x64) and separated by 2 grey pixels.

    Args:
        nrow: images per row; ``ceil(sqrt(B))`` when None.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
        raise ValueError(
            f"x must have shape (B, C, H, W) with B >= 1 and C in (1, 3), got {tuple(x.shape)}"
        )
    b, c, h, w = x.shape
    ncol = nrow if nrow is not None else math.ceil(math.sqrt(b))
    if ncol < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    nrows = math.ceil(b / ncol)
    scale = max(1, math.ceil(_MIN_TILE / max(h, w)))
    tiles = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    tiles = tiles.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3).numpy()
    th, tw = h * scale, w * scale
    grid = np.full(
        (_PAD + nrows * (th + _PAD), _PAD + ncol * (tw + _PAD), c), _PAD_VALUE, dtype=np.uint8
    )
    for k in range(b):
        top, left = _PAD + (k // ncol) * (th + _PAD), _PAD + (k % ncol) * (tw + _PAD)
        grid[top : top + th, left : left + tw] = tiles[k].transpose(1, 2, 0)
    return Image.fromarray(grid[..., 0] if c == 1 else grid)


def _stamp(canvas: np.ndarray, points: np.ndarray, lim: float, color: tuple[int, int, int]) -> None:
    """Draw ``points`` (N, 2) as 2x2-pixel dots; ``[-lim, lim]^2`` maps onto the canvas, y up."""
    size = canvas.shape[0]
    col = np.floor((points[:, 0] + lim) / (2 * lim) * (size - 1)).astype(np.int64)
    row = np.floor((lim - points[:, 1]) / (2 * lim) * (size - 1)).astype(np.int64)
    for dr in (0, 1):
        for dc in (0, 1):
            r, cc = row + dr, col + dc
            keep = (r >= 0) & (r < size) & (cc >= 0) & (cc < size)
            canvas[r[keep], cc[keep]] = color


def save_scatter(
    points: Tensor,
    path: str | os.PathLike,
    reference: Tensor | None = None,
    lim: float = 1.6,
) -> Path:
    """Save the scatter plot :func:`scatter_image` draws."""
    return save_image(scatter_image(points, reference, lim), path)


def scatter_image(points: Tensor, reference: Tensor | None = None, lim: float = 1.6) -> Image.Image:
    """A scatter plot of ``points`` ``(N, 2)`` on a white 512x512 canvas.

    The canvas spans ``[-lim, lim]^2`` inside a light frame; points outside are dropped.
    ``reference`` ``(M, 2)`` (for example data samples) is drawn in light grey beneath.
    Non-finite points are skipped.
    """
    if lim <= 0:
        raise ValueError(f"lim must be > 0, got {lim}")
    canvas = np.full((_CANVAS, _CANVAS, 3), 255, dtype=np.uint8)
    layers = (("reference", reference, _REFERENCE_COLOR), ("points", points, _POINT_COLOR))
    for name, pts, color in layers:
        if pts is None:
            continue
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"{name} must have shape (N, 2), got {tuple(pts.shape)}")
        array = pts.detach().double().cpu().numpy()
        _stamp(canvas, array[np.isfinite(array).all(axis=1)], lim, color)
    canvas[[0, -1], :] = _FRAME_COLOR
    canvas[:, [0, -1]] = _FRAME_COLOR
    return Image.fromarray(canvas)


def save_trajectories(
    panels: dict[str, Tensor],
    path: str | os.PathLike,
    reference: Tensor | None = None,
    lim: float = 2.5,
    size: int = 400,
) -> Path:
    """Side-by-side panels of 2-D trajectories, one per entry of ``panels``.

    Each value has shape ``(K + 1, B, 2)`` (states along the time grid); paths are drawn
    as thin lines from their start (grey dot) to their end (blue dot) on ``[-lim, lim]^2``,
    clipped to their panel, over ``reference`` points ``(M, 2)`` in light grey, with the
    panel's name written above it.
    """
    from PIL import ImageDraw

    if not panels:
        raise ValueError("panels must hold at least one trajectory")
    header = 20
    image = Image.new("RGB", (size * len(panels), size + header), "white")

    def pixel(points: np.ndarray) -> list[tuple[float, float]]:
        cols = (points[:, 0] + lim) / (2 * lim) * (size - 1)
        rows = (lim - points[:, 1]) / (2 * lim) * (size - 1)
        return list(zip(cols.tolist(), rows.tolist(), strict=True))

    for k, (name, trajectory) in enumerate(panels.items()):
        if trajectory.ndim != 3 or trajectory.shape[2] != 2:
            raise ValueError(
                f"panel {name!r} must have shape (K + 1, B, 2), got {tuple(trajectory.shape)}"
            )
        canvas = np.full((size, size, 3), 255, dtype=np.uint8)
        if reference is not None:
            _stamp(canvas, reference.detach().double().cpu().numpy(), lim, (225, 225, 225))
        panel = Image.fromarray(canvas)
        draw = ImageDraw.Draw(panel)
        array = trajectory.detach().double().cpu().numpy()
        for b in range(array.shape[1]):
            draw.line(pixel(array[:, b]), fill=(150, 170, 210), width=1)
        for points, color in ((array[0], (120, 120, 120)), (array[-1], _POINT_COLOR)):
            for x, y in pixel(points):
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
        draw.rectangle([0, 0, size - 1, size - 1], outline=_FRAME_COLOR)
        image.paste(panel, (k * size, header))
        ImageDraw.Draw(image).text((k * size + 6, 4), name, fill=(0, 0, 0))
    return save_image(image, path)
