r"""Per-sample start times: every sample on its own grid from its own ``t0`` to ``t1``.

Denoising MCMC hands the integrator a batch whose samples sit at different noise levels,
so ``sample_ode`` / ``sample_sde`` accept ``t0`` as a ``(B,)`` tensor. Sample ``b`` is then
integrated on the grid ``time_grid(grid, K, t0[b], t1, path)`` -- the grid it would get run
alone with ``t0 = float(t0[b])`` -- with the same step count ``K`` (the same budget ``nfe``)
for every sample. The steps are the scalar methods' steps with the step size, the
coefficients and the time handed to the field made ``(B,)``; one batched field call per
stage, so ``SampleResult.nfe`` counts exactly what one sample alone would cost.

Equal to integrating each sample alone, up to float rounding (the step ``h`` multiplies as a
tensor instead of a Python float), for: the single-step ODE methods (``euler``,
``midpoint``, ``heun`` with or without ``final_euler``, ``rk4``); EDM's stochastic Heun
(:mod:`flowkit.solvers.edm`); and ``euler_maruyama`` / ``flow_sde``. The stochastic methods
draw sample ``b``'s noise from its own stream (``indices[b]``); a step draws noise for the
batch when any sample of it is stochastic there and applies it only to those. When the
stochastic steps differ between samples (an EDM ``[S_tmin, S_tmax]`` range that some grids
cross earlier than others; the noise-free first Euler-Maruyama steps near ``alpha = 0``),
a sample then reads its stream at other positions than it would alone: the same law, not
the same numbers. With EDM's defaults (``S_tmin = 0``, ``S_tmax = inf``) and for ODEs the
results match alone.

The data-prediction methods ``ddim`` and ``dpm_solver_pp`` take per-sample starts too
(:mod:`flowkit.solvers.per_sample_data`). Not supported with per-sample ``t0`` (a
``ValueError`` says so): ``new_euler`` (it re-mixes with the noise at ``alpha(t0) = 0``),
adaptive methods, ``pc``, user grids, and EDM from a time where ``alpha(t0) = 0``.

Shapes: ``t0`` is ``(B,)``; the grids are ``(B, K + 1)`` float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from flowkit.paths import AffinePath
from flowkit.paths.affine import broadcast_like
from flowkit.solvers.field import VelocityField
from flowkit.solvers.grids import time_grid
from flowkit.solvers.increments import PerSampleNoise
from flowkit.solvers.per_sample_data import (
    PER_SAMPLE_DATA_METHODS,
    run_data_prediction_per_sample,
)
from flowkit.solvers.result import SampleResult

PER_SAMPLE_ODE_METHODS = ("euler", "midpoint", "heun", "rk4", *PER_SAMPLE_DATA_METHODS)
PER_SAMPLE_SDE_METHODS = ("euler_maruyama", "flow_sde", "edm")


def is_per_sample(t0: object) -> bool:
    """Whether ``t0`` is a per-sample ``(B,)`` tensor of start times."""
    return isinstance(t0, Tensor) and t0.dim() == 1


def per_sample_grid(
    grid: str, steps: int, t0: Tensor, t1: float, path: AffinePath, **options: float
) -> Tensor:
    """``(B, steps + 1)`` float64: row ``b`` is ``time_grid(grid, steps, t0[b], t1, path)``."""
    if not isinstance(grid, str):
        raise ValueError("per-sample t0 takes a named grid, not a list of times")
    starts = t0.detach().to("cpu", torch.float64)
    if bool((starts >= t1).any()):
        raise ValueError(f"every t0 must be < t1={t1}, got max t0={float(starts.max())}")
    if grid == "uniform" and not options:
        fractions = torch.arange(steps + 1, dtype=torch.float64) / steps
        rows = starts[:, None] + (t1 - starts[:, None]) * fractions[None, :]
        rows[:, -1] = t1
        return rows
    if grid == "edm" and steps > 1:
        return _edm_grid_per_sample(path, steps, starts, t1, **options)
    unique, inverse = torch.unique(starts, return_inverse=True)
    table = torch.stack([time_grid(grid, steps, float(t), t1, path, **options) for t in unique])
    return table[inverse]


def _edm_grid_per_sample(
    path: AffinePath,
    steps: int,
    t0: Tensor,
    t1: float,
    rho: float = 7.0,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
) -> Tensor:
    """The ``"edm"`` grid of :mod:`flowkit.solvers.grids` for every ``t0[b]`` at once: the same
    arithmetic, row by row, with one vectorised bisection."""
    alpha, sigma, _, _ = path.coefficients(torch.cat([t0, t0.new_tensor([t1])]))
    ends = sigma / alpha.clamp_min(1e-300)
    top = ends[:-1].clamp_max(sigma_max)
    reaches_zero = float(ends[-1]) <= 0
    count = steps if reaches_zero else steps + 1
    low = sigma_min if reaches_zero else max(sigma_min, float(ends[-1]))
    i = torch.arange(count, dtype=torch.float64)
    root = top[:, None] ** (1 / rho)
    levels = (root + i[None, :] / (count - 1) * (low ** (1 / rho) - root)) ** rho
    lo = t0[:, None].expand_as(levels).clone()
    hi = torch.full_like(levels, t1)
    for _ in range(100):
        mid = (lo + hi) / 2
        a, s, _, _ = path.coefficients(mid.flatten())
        too_noisy = (s / a.clamp_min(1e-300)).reshape(mid.shape) > levels
        lo = torch.where(too_noisy, mid, lo)
        hi = torch.where(too_noisy, hi, mid)
    times = (lo + hi) / 2
    if reaches_zero:
        times = torch.cat([times, torch.full_like(times[:, :1], t1)], dim=1)
    times[:, 0], times[:, -1] = t0, t1
    if not bool((times[:, 1:] > times[:, :-1]).all()):
        raise ValueError(
            f"grid 'edm' with {steps} steps is not strictly increasing for some t0 in "
            f"[{float(t0.min())}, {float(t0.max())}]; use fewer steps"
        )
    return times


def _at(times: Tensor, x: Tensor) -> Tensor:
    """Per-sample times in ``x``'s dtype and device (what the field receives)."""
    return times.to(device=x.device, dtype=x.dtype)


def _h(h: Tensor, x: Tensor) -> Tensor:
    return broadcast_like(_at(h, x), x)


def _euler(v: VelocityField, x: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
    return x + _h(t_next - t, x) * v(x, _at(t, x))


def _midpoint(v: VelocityField, x: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
    h = t_next - t
    mid = x + _h(h / 2, x) * v(x, _at(t, x))
    return x + _h(h, x) * v(mid, _at(t + h / 2, x))


def _heun(v: VelocityField, x: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
    h = t_next - t
    d = v(x, _at(t, x))
    return x + _h(h / 2, x) * (d + v(x + _h(h, x) * d, _at(t_next, x)))


def _rk4(v: VelocityField, x: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
    h = t_next - t
    k1 = v(x, _at(t, x))
    k2 = v(x + _h(h / 2, x) * k1, _at(t + h / 2, x))
    k3 = v(x + _h(h / 2, x) * k2, _at(t + h / 2, x))
    k4 = v(x + _h(h, x) * k3, _at(t_next, x))
    return x + _h(h / 6, x) * (k1 + 2 * k2 + 2 * k3 + k4)


_STEPS = {"euler": _euler, "midpoint": _midpoint, "heun": _heun, "rk4": _rk4}


def run_ode_per_sample(
    velocity: VelocityField,
    x: Tensor,
    times: Tensor,
    method: str,
    final_euler: bool,
    trajectory: list[Tensor] | None,
) -> Tensor:
    """Fixed-step ODE integration, sample ``b`` on ``times[b]`` (``(B, K + 1)``)."""
    if method not in _STEPS:
        raise ValueError(
            f"method {method!r} does not take per-sample start times; use one of "
            f"{list(PER_SAMPLE_ODE_METHODS)} (or sample_sde with 'edm')"
        )
    if times.shape[0] != x.shape[0]:
        raise ValueError(f"t0 has {times.shape[0]} entries for a batch of {x.shape[0]}")
    steps = times.shape[1] - 1
    velocity.check_start(times[:, 0])
    with torch.no_grad():
        for i in range(steps):
            step = _euler if final_euler and i == steps - 1 else _STEPS[method]
            x = step(velocity, x, times[:, i], times[:, i + 1])
            if trajectory is not None:
                trajectory.append(x)
    return x


def _coefficients(path: AffinePath, t: Tensor) -> tuple[Tensor, Tensor]:
    alpha, sigma, _, _ = path.coefficients(t.to(torch.float64))
    return alpha.to(torch.float64), sigma.to(torch.float64)


def _bisect_level(path: AffinePath, level: Tensor, hi: Tensor, iters: int = 64) -> Tensor:
    """Per sample, the time ``t <= hi`` with ``sigma / alpha = level`` (0 if none)."""
    low = torch.zeros_like(hi)
    high = hi.clone()
    alpha0, sigma0 = _coefficients(path, low)
    at_zero = sigma0 / alpha0.clamp_min(1e-300)
    at_zero = torch.where(alpha0 > 0, at_zero, torch.full_like(at_zero, math.inf))
    for _ in range(iters):
        mid = (low + high) / 2
        alpha, sigma = _coefficients(path, mid)
        too_noisy = (alpha <= 0) | (sigma > level * alpha)
        low = torch.where(too_noisy, mid, low)
        high = torch.where(too_noisy, high, mid)
    return torch.where(at_zero <= level, torch.zeros_like(hi), high)


def run_edm_per_sample(
    counted: VelocityField,
    noise: PerSampleNoise,
    x: Tensor,
    times: Tensor,
    S_churn: float,
    S_tmin: float,
    S_tmax: float,
    S_noise: float,
    noise_scale: float,
    trajectory: list[Tensor] | None,
) -> Tensor:
    """EDM stochastic Heun (:mod:`flowkit.solvers.edm`), sample ``b`` on ``times[b]``."""
    path = counted.path
    steps = times.shape[1] - 1
    alpha0, _ = _coefficients(path, times[:, 0])
    if bool((alpha0 <= 0).any()):
        raise ValueError(
            "EDM with per-sample t0 needs alpha(t0) > 0 for every sample (a finite noise level "
            f"sigma/alpha); got t0 = {float(times[:, 0].min())}"
        )
    gamma_max = min(noise_scale * S_churn / steps, math.sqrt(2) - 1)
    with torch.no_grad():
        for i in range(steps):
            t, t_next = times[:, i], times[:, i + 1]
            a, s = _coefficients(path, t)
            sigma = s / a
            x_tilde = x / _h(a, x)
            churned = (sigma >= S_tmin) & (sigma <= S_tmax) & torch.isfinite(sigma)
            if gamma_max > 0 and bool(churned.any()):
                level = (1 + gamma_max) * sigma
                t_hat = torch.where(churned, torch.minimum(_bisect_level(path, level, t), t), t)
                a_hat, s_hat = _coefficients(path, t_hat)
                sigma_hat = s_hat / a_hat
                spread = torch.where(churned, (sigma_hat**2 - sigma**2).clamp_min(0).sqrt(), 0.0)
                x_tilde = x_tilde + _h(spread * S_noise, x) * noise.next()
            else:
                t_hat, a_hat, sigma_hat = t, a, sigma
            d = counted.evaluate(_h(a_hat, x) * x_tilde, _at(t_hat, x)).epsilon
            a_next, s_next = _coefficients(path, t_next)
            sigma_next = s_next / a_next
            x_next = x_tilde + _h(sigma_next - sigma_hat, x) * d
            if i < steps - 1:
                d_next = counted.evaluate(_h(a_next, x) * x_next, _at(t_next, x)).epsilon
                x_next = x_tilde + _h(sigma_next - sigma_hat, x) * (d + d_next) / 2
            x = _h(a_next, x) * x_next
            if trajectory is not None:
                trajectory.append(x)
    return x


def run_sde_per_sample(
    counted: VelocityField,
    noise: PerSampleNoise,
    x: Tensor,
    times: Tensor,
    diffusion_sq: Callable[[float], float],
    trajectory: list[Tensor] | None,
) -> Tensor:
    """Euler-Maruyama of :mod:`flowkit.solvers.sde` (``eps^2 = diffusion_sq(t)``), per sample.

    A step is noise-free where ``eps^2 = 0``, on the last step, or where the stiffness
    ``r = h eps^2 / (2 sigma^2) > 1`` (the scalar method's rule), sample by sample."""
    steps = times.shape[1] - 1
    path = counted.path
    with torch.no_grad():
        for i in range(steps):
            t, t_next = times[:, i], times[:, i + 1]
            h = t_next - t
            _, sigma = _coefficients(path, t)
            eps_sq = torch.tensor([diffusion_sq(float(u)) for u in t], dtype=torch.float64)
            if i == steps - 1:
                eps_sq = torch.zeros_like(eps_sq)
            stochastic = (eps_sq > 0) & (sigma > 0) & (h * eps_sq / (2 * sigma**2) <= 1)
            eps_sq = torch.where(stochastic, eps_sq, 0.0)
            ev = counted.evaluate(x, _at(t, x))
            ratio = torch.where(stochastic, eps_sq / (2 * sigma.clamp_min(1e-300)), 0.0)
            x_new = x + _h(h, x) * (ev.velocity - _h(ratio, x) * ev.epsilon)
            if bool(stochastic.any()):
                x_new = x_new + _h((eps_sq * h).sqrt(), x) * noise.next()
            x = x_new
            if trajectory is not None:
                trajectory.append(x)
    return x


def check_indices(x: Tensor, indices: Sequence[int] | Tensor | None) -> list[int]:
    """``indices`` as a list (default ``range(B)``), one per sample."""
    out = list(range(x.shape[0])) if indices is None else [int(i) for i in indices]
    if len(out) != x.shape[0]:
        raise ValueError(f"indices has {len(out)} entries for a batch of {x.shape[0]}")
    return out


def sample_ode_per_sample(
    velocity: VelocityField,
    x: Tensor,
    nfe: int | None,
    method: str,
    grid: str,
    t0: Tensor,
    t1: float,
    steps: int,
    grid_options: dict | None,
    final_euler: bool,
    return_trajectory: bool,
) -> SampleResult:
    """``sample_ode`` with a ``(B,)`` tensor ``t0`` (module docstring); ``steps`` from the
    budget ``nfe`` as for a scalar start."""
    if method not in PER_SAMPLE_ODE_METHODS:
        raise ValueError(
            f"method {method!r} does not take per-sample start times; use one of "
            f"{list(PER_SAMPLE_ODE_METHODS)} (or sample_sde with 'edm')"
        )
    if t0.shape != (x.shape[0],):
        raise ValueError(f"t0 must have shape ({x.shape[0]},), got {tuple(t0.shape)}")
    times = per_sample_grid(grid, steps, t0, t1, velocity.path, **(grid_options or {}))
    trajectory = [x] if return_trajectory else None
    if method in PER_SAMPLE_DATA_METHODS:
        x = run_data_prediction_per_sample(velocity, x, times, method, trajectory)
    else:
        x = run_ode_per_sample(velocity, x, times, method, final_euler, trajectory)
    stacked = torch.stack(trajectory) if trajectory is not None else None
    return SampleResult(x=x, nfe=velocity.calls, trajectory=stacked, times=times)


def sample_sde_per_sample(
    counted: VelocityField,
    x: Tensor,
    method: str,
    grid: str,
    t0: Tensor,
    t1: float,
    steps: int,
    noise: PerSampleNoise,
    grid_options: dict | None,
    return_trajectory: bool,
    diffusion_sq: Callable[[float], float] | None = None,
    **edm_options: float,
) -> SampleResult:
    """``sample_sde`` / ``sample_edm`` with a ``(B,)`` tensor ``t0`` (module docstring)."""
    if method not in PER_SAMPLE_SDE_METHODS:
        raise ValueError(
            f"method {method!r} does not take per-sample start times; use one of "
            f"{list(PER_SAMPLE_SDE_METHODS)}"
        )
    if t0.shape != (x.shape[0],):
        raise ValueError(f"t0 must have shape ({x.shape[0]},), got {tuple(t0.shape)}")
    times = per_sample_grid(grid, steps, t0, t1, counted.path, **(grid_options or {}))
    counted.check_start(times[:, 0], "sample_sde")
    trajectory = [x] if return_trajectory else None
    if method == "edm":
        x = run_edm_per_sample(counted, noise, x, times, trajectory=trajectory, **edm_options)
    else:
        assert diffusion_sq is not None
        x = run_sde_per_sample(counted, noise, x, times, diffusion_sq, trajectory)
    stacked = torch.stack(trajectory) if trajectory is not None else None
    return SampleResult(x=x, nfe=counted.calls, trajectory=stacked, times=times)


def setup_per_sample(
    field: Callable[..., Tensor],
    x: Tensor,
    nfe: int | None,
    grid: object,
    method: str,
    min_nfe: int,
    *,
    path: AffinePath | None,
    prediction: str | None,
    t1: float | None,
    noise_scale: float,
    seed: int,
    indices: Sequence[int] | Tensor | None,
    cond: dict | None,
) -> tuple[VelocityField, PerSampleNoise, float]:
    """The checks of ``sde.setup`` for a per-sample ``t0``: the counting field, the noise and
    the end time."""
    counted = VelocityField(field, path, prediction, cond)
    if not noise_scale >= 0:
        raise ValueError(f"noise_scale must be >= 0, got noise_scale={noise_scale}")
    if not isinstance(grid, str):
        raise ValueError(f"per-sample t0 takes a named grid, not {grid!r}")
    if nfe is None or nfe < min_nfe:
        raise ValueError(f"method {method!r} needs nfe >= {min_nfe}, got nfe={nfe}")
    noise = PerSampleNoise(x.shape[1:], check_indices(x, indices), seed, x.device, x.dtype)
    return counted, noise, counted.path.t_max if t1 is None else t1
