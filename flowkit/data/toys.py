"""Two-dimensional toy distributions, generated with torch from a seed.

Every sampler returns float32 points of shape ``(n, 2)`` whose support lies in about
``[-1, 1]^2``, drawn from a ``torch.Generator`` seeded by ``seed`` alone, so the same
``(name, n, seed)`` always gives the same points.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["TOY_NAMES", "sample_toy"]


def _checkerboard(n: int, g: torch.Generator) -> Tensor:
    """4x4 board on ``[-1, 1]^2``; cell ``(i, j)`` is filled when ``i + j`` is even.

    A column ``i`` is drawn uniformly, then one of the two filled rows of that column
    (``j = 2k + i mod 2``), then a uniform point inside the 0.5-wide cell.
    """
    col = torch.randint(0, 4, (n,), generator=g)
    row = 2 * torch.randint(0, 2, (n,), generator=g) + col % 2
    cell = torch.stack([col, row], dim=1).float()
    return -1.0 + 0.5 * (cell + torch.rand(n, 2, generator=g))


def _eight_gaussians(n: int, g: torch.Generator) -> Tensor:
    """Mixture of 8 equal Gaussians (std 0.05) centred on a circle of radius 0.8."""
    angle = torch.randint(0, 8, (n,), generator=g).float() * (2 * math.pi / 8)
    centers = 0.8 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centers + 0.05 * torch.randn(n, 2, generator=g)


def _moons(n: int, g: torch.Generator) -> Tensor:
    """Two interleaved half circles (scikit-learn's moons), centred and scaled by 0.6.

    Upper moon ``(cos a, sin a)``, lower moon ``(1 - cos a, 0.5 - sin a)`` for
    ``a ~ U[0, pi]``, then ``0.6 * (p - (0.5, 0.25))`` plus noise of std 0.03.
    """
    angle = math.pi * torch.rand(n, generator=g)
    lower = torch.rand(n, generator=g) < 0.5
    x = torch.where(lower, 1.0 - torch.cos(angle), torch.cos(angle))
    y = torch.where(lower, 0.5 - torch.sin(angle), torch.sin(angle))
    points = 0.6 * (torch.stack([x - 0.5, y - 0.25], dim=1))
    return points + 0.03 * torch.randn(n, 2, generator=g)


def _spirals(n: int, g: torch.Generator) -> Tensor:
    """Two interleaved Archimedean spirals of 1.5 turns, radius up to 0.9, noise std 0.02.

    ``a = 3 pi sqrt(u)`` (uniform density along the arc), ``r = 0.9 a / (3 pi)``; the second
    arm is the first rotated by ``pi``.
    """
    angle = 3 * math.pi * torch.sqrt(torch.rand(n, generator=g))
    radius = 0.9 * angle / (3 * math.pi)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    points = (sign * radius)[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return points + 0.02 * torch.randn(n, 2, generator=g)


_TOYS: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "checkerboard": _checkerboard,
    "8gaussians": _eight_gaussians,
    "moons": _moons,
    "spirals": _spirals,
}
TOY_NAMES: tuple[str, ...] = tuple(_TOYS)


def sample_toy(name: str, n: int, seed: int = 0) -> Tensor:
    """Draw ``n`` points of the toy distribution ``name``.

    Args:
        name: one of :data:`TOY_NAMES` ("checkerboard", "8gaussians", "moons", "spirals").
        n: number of points (>= 0).
        seed: seed of the ``torch.Generator`` that draws every random number.

    Returns:
        float32 tensor of shape ``(n, 2)`` on the CPU, support in about ``[-1, 1]^2``.
    """
    if name not in _TOYS:
        raise ValueError(f"unknown toy distribution {name!r}; expected one of {list(TOY_NAMES)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    generator = torch.Generator().manual_seed(seed)
    return _TOYS[name](n, generator).to(torch.float32)
