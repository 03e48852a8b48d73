"""Time grids from ``t0`` (noise side) to ``t1`` (data side)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def time_grid(
    grid: str | Sequence[float] | Tensor, steps: int, t0: float = 0.0, t1: float = 1.0
) -> Tensor:
    """A float64 ``(steps + 1,)`` grid that starts at ``t0`` and ends exactly at ``t1``.

    Args:
        grid: ``"uniform"``, or an explicit increasing sequence of times (then ``steps``,
            ``t0`` and ``t1`` are read from it).
        steps: the number of intervals.
    """
    if isinstance(grid, str):
        if grid != "uniform":
            raise ValueError(f"unknown grid {grid!r}; expected 'uniform' or a list of times")
        if steps < 1:
            raise ValueError(f"a grid needs at least 1 step, got steps={steps}")
        times = torch.linspace(t0, t1, steps + 1, dtype=torch.float64)
        times[-1] = t1
        return times
    times = torch.as_tensor(grid, dtype=torch.float64).flatten()
    if times.numel() < 2 or not bool((times[1:] > times[:-1]).all()):
        raise ValueError(f"a user grid must be increasing with at least 2 times, got {grid!r}")
    return times
