"""Time grids from ``t0`` (noise side) to ``t1`` (data side).

Every grid is a float64 tensor of ``steps + 1`` increasing times that starts exactly at
``t0`` and ends exactly at ``t1``. Named grids are warps ``u -> w(u)`` of the uniform
grid on ``[0, 1]`` mapped onto ``[t0, t1]``, except ``"edm"``, which is uniform in
``sigma^(1/rho)`` of the path's EDM noise level.

- ``"uniform"``: equal steps.
- ``"edm"`` (Karras et al. 2022, options ``rho=7``, ``sigma_min=0.002``,
  ``sigma_max=80``): EDM noise levels ``sigma_i = (smax^(1/rho) + i/(N-1)
  (smin^(1/rho) - smax^(1/rho)))^rho`` for ``i < N`` and ``sigma_N = 0``, where the
  EDM noise level of ``x_t = alpha x1 + sigma x0`` is ``sigma / alpha``, mapped back to
  ``t`` by bisection on the path (rectified: ``t = 1 / (1 + sigma)``). ``sigma_max`` and
  ``sigma_min`` are clipped to the path's own noise levels at ``t0`` and ``t1``; a path
  that stops short of noise level 0 (VP, VE) puts its last grid point at ``t1`` instead of
  stepping to 0. The first time is then replaced by ``t0`` and the last by ``t1``, so the
  grid ends at the endpoints.
- ``"shifted"`` (Stable Diffusion 3, option ``shift=3``): with ``s = 1 - u``,
  ``s' = shift s / (1 + (shift - 1) s)``; ``shift > 1`` spends more steps near the noise.
- ``"cosine"``: ``w(u) = (1 - cos(pi u)) / 2``, dense at both ends.
- a user list of increasing times (then ``steps``, ``t0`` and ``t1`` are read from it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from flowkit.paths import AffinePath, rectified
from flowkit.solvers.names import GRIDS


def _edm_noise_level(path: AffinePath, t: Tensor) -> Tensor:
    alpha, sigma, _, _ = path.coefficients(t)
    return sigma / alpha.clamp_min(1e-300)


def time_of_noise_level(path: AffinePath, levels: Tensor, t0: float, t1: float) -> Tensor:
    """Invert the decreasing map ``t -> sigma(t) / alpha(t)`` on ``[t0, t1]`` by bisection."""
    lo = torch.full_like(levels, t0)
    hi = torch.full_like(levels, t1)
    for _ in range(100):
        mid = (lo + hi) / 2
        too_noisy = _edm_noise_level(path, mid) > levels
        lo = torch.where(too_noisy, mid, lo)
        hi = torch.where(too_noisy, hi, mid)
    return (lo + hi) / 2


def _edm_grid(
    path: AffinePath,
    steps: int,
    t0: float,
    t1: float,
    rho: float = 7.0,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
) -> Tensor:
    if steps == 1:
        return torch.tensor([t0, t1], dtype=torch.float64)
    ends = _edm_noise_level(path, torch.tensor([t0, t1], dtype=torch.float64))
    sigma_max = min(sigma_max, float(ends[0]))
    reaches_zero = float(ends[1]) <= 0
    # A path that ends at noise level 0 (rectified, cosine) spends its last step from
    # sigma_min to 0, as EDM does; one that stops short (VP, VE) ends at its own level.
    count = steps if reaches_zero else steps + 1
    sigma_min = sigma_min if reaches_zero else max(sigma_min, float(ends[1]))
    i = torch.arange(count, dtype=torch.float64)
    levels = (
        sigma_max ** (1 / rho) + i / (count - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    ) ** rho
    times = time_of_noise_level(path, levels, t0, t1)
    if reaches_zero:
        times = torch.cat([times, torch.tensor([t1], dtype=torch.float64)])
    times[0] = t0
    return times


def _warp(grid: str, u: Tensor, shift: float = 3.0) -> Tensor:
    if grid == "uniform":
        return u
    if grid == "cosine":
        return (1 - torch.cos(math.pi * u)) / 2
    s = 1 - u
    return 1 - shift * s / (1 + (shift - 1) * s)


@functools.lru_cache(maxsize=64)
def _cached_uniform(steps: int, t0: float, t1: float) -> tuple[Tensor, tuple[float, ...]]:
    points = tuple(t0 + (t1 - t0) * k / steps for k in range(steps)) + (t1,)
    return torch.tensor(points, dtype=torch.float64), points


def uniform_grid(steps: int, t0: float, t1: float) -> tuple[Tensor, list[float]]:
    """The ``"uniform"`` grid as a fresh float64 tensor and as python floats (what a
    sampler's loop reads), ``t0 + (t1 - t0) k / steps`` for ``k < steps`` and then ``t1``.

    Grids of python float ends are built once and cached (the tensor is cloned for every
    caller), which keeps the fixed cost of a sampler call small.
    """
    if steps < 1:
        raise ValueError(f"a grid needs at least 1 step, got steps={steps}")
    if not t1 > t0:
        raise ValueError(f"a grid needs t1 > t0, got t0={t0}, t1={t1}")
    # -0.0 == 0.0 as a cache key, but a last point of -0.0 is not 0.0: build that one afresh.
    if type(steps) is int and type(t0) is float and type(t1) is float and t1 != 0:
        times, points = _cached_uniform(steps, t0, t1)
        return times.clone(), list(points)
    points = [t0 + (t1 - t0) * k / steps for k in range(steps)] + [t1]
    times = torch.tensor(points, dtype=torch.float64)
    return times, times.tolist()


def time_grid(
    grid: str | Sequence[float] | Tensor,
    steps: int,
    t0: float = 0.0,
    t1: float = 1.0,
    path: AffinePath | None = None,
    **options: float,
) -> Tensor:
    """A float64 ``(steps + 1,)`` grid from exactly ``t0`` to exactly ``t1``.

    Args:
        grid: ``"uniform"``, ``"edm"``, ``"shifted"``, ``"cosine"``, or an explicit
            increasing sequence of times.
        steps: the number of intervals.
        path: the path whose EDM noise levels the ``"edm"`` grid follows (rectified by
            default).
        options: the grid's parameters (``rho``, ``sigma_min``, ``sigma_max``; ``shift``).
    """
    if not isinstance(grid, str):
        times = torch.as_tensor(grid, dtype=torch.float64).flatten()
        if times.numel() < 2 or not bool((times[1:] > times[:-1]).all()):
            raise ValueError(f"a user grid must be increasing with at least 2 times, got {grid!r}")
        return times
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; expected one of {list(GRIDS)} or a list of times")
    if steps < 1:
        raise ValueError(f"a grid needs at least 1 step, got steps={steps}")
    allowed = {"edm": {"rho", "sigma_min", "sigma_max"}, "shifted": {"shift"}}.get(grid, set())
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"grid {grid!r} takes options {sorted(allowed)}, got {sorted(unknown)}")
    if grid == "uniform":
        return uniform_grid(steps, t0, t1)[0]
    if grid == "edm":
        times = _edm_grid(path or rectified(), steps, t0, t1, **options)
    else:
        u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
        times = t0 + (t1 - t0) * _warp(grid, u, **options)
    times[0], times[-1] = t0, t1
    if not bool((times[1:] > times[:-1]).all()):
        raise ValueError(
            f"grid {grid!r} with {steps} steps on [{t0}, {t1}] is not strictly increasing "
            f"(options {options}); use fewer steps or other options"
        )
    return times
