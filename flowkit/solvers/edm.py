r"""EDM's stochastic sampler (Karras et al. 2022, Algorithm 2) on any affine path.

EDM coordinates. With ``x_t = alpha x1 + sigma x0``, the rescaled state
``x~ = x / alpha`` is ``x1 + sigma~ x0`` with ``sigma~ = sigma / alpha``: a VE process,
whose probability-flow ODE is ``dx~/dsigma~ = (x~ - D(x~; sigma~)) / sigma~``. The
denoiser ``D`` is the "x0" (data) prediction, and ``(x~ - D) / sigma~`` is exactly the
epsilon prediction, so one field evaluation gives the derivative.

Per step ``i`` of the grid ``t_0 < ... < t_N`` (the path's times, uniform by default;
``grid="edm"`` gives Karras et al.'s ``rho = 7`` noise levels mapped to times; ``sigma~``
falls along it):

1. churn: if ``S_tmin <= sigma~_i <= S_tmax``, ``gamma = min(S_churn / N, sqrt(2) - 1)``
   (else 0), ``sigma^ = sigma~_i (1 + gamma)`` and
   ``x~^ = x~_i + sqrt(sigma^^2 - sigma~_i^2) S_noise z``; the field is evaluated at the
   time ``t^ <= t_i`` with ``sigma~(t^) = sigma^`` (found by bisection; clamped at
   ``t = 0``);
2. Euler: ``x~_{i+1} = x~^ + (sigma~_{i+1} - sigma^) d``, ``d = epsilon_hat(x^, t^)``;
3. Heun correction, except on the last step:
   ``x~_{i+1} = x~^ + (sigma~_{i+1} - sigma^) (d + d') / 2``, ``d' = epsilon_hat`` at
   ``(x_{i+1}, t_{i+1})``.

So ``N`` steps cost ``2 N - 1`` evaluations; a budget ``nfe`` gives ``N = (nfe + 1) // 2``
(EDM's 35 NFE = 18 steps). Where ``alpha(t_i) = 0`` (``t = 0`` on the rectified and
cosine paths) ``sigma~_i`` is infinite: there is no churn, and the step is the limit of
the Euler step, ``x_{i+1} = alpha_{i+1} D + sigma_{i+1} epsilon_hat`` (DDIM), with one
evaluation and no Heun correction (it would need ``sigma~_{i+1} - sigma^ = -inf``).

Defaults are EDM's code (``S_churn = 0``, ``S_tmin = 0``, ``S_tmax = inf``,
``S_noise = 1``): the deterministic Heun sampler. Their ImageNet-64 setting is
``S_churn = 40, S_tmin = 0.05, S_tmax = 50, S_noise = 1.003``. ``noise_scale`` multiplies
``S_churn`` so that ``noise_scale = 0`` is the ODE, as for the other SDE methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from flowkit.paths import AffinePath
from flowkit.solvers.field import VelocityField
from flowkit.solvers.increments import PerSampleNoise
from flowkit.solvers.result import SampleResult
from flowkit.solvers.sde import coefficients_at, setup


def edm_sigma(path: AffinePath, t: float) -> float:
    """``sigma~(t) = sigma(t) / alpha(t)``; ``inf`` where ``alpha = 0``."""
    a, s, _, _ = coefficients_at(path, t)
    return math.inf if a <= 0 else s / a


def edm_time(path: AffinePath, sigma_tilde: float, t_hi: float, iters: int = 64) -> float:
    """The time ``t <= t_hi`` with ``sigma~(t) = sigma_tilde`` (bisection; 0 if none)."""
    lo, hi = 0.0, t_hi
    if edm_sigma(path, lo) <= sigma_tilde:
        return lo
    for _ in range(iters):
        mid = (lo + hi) / 2
        if edm_sigma(path, mid) > sigma_tilde:
            lo = mid
        else:
            hi = mid
    return hi


def sample_edm(
    field: Callable[..., Tensor],
    x: Tensor,
    nfe: int | None = None,
    grid: str | Sequence[float] | Tensor = "uniform",
    *,
    path: AffinePath | None = None,
    prediction: str | None = None,
    t0: float | None = None,
    t1: float | None = None,
    S_churn: float = 0.0,
    S_tmin: float = 0.0,
    S_tmax: float = math.inf,
    S_noise: float = 1.0,
    noise_scale: float = 1.0,
    seed: int = 0,
    indices: Sequence[int] | Tensor | None = None,
    grid_options: dict | None = None,
    return_trajectory: bool = False,
    cond: dict | None = None,
) -> SampleResult:
    """EDM's stochastic Heun sampler (module docstring); arguments as :func:`sample_sde`."""
    if S_churn < 0 or S_noise < 0:
        raise ValueError(f"S_churn and S_noise must be >= 0, got {S_churn}, {S_noise}")
    counted, times, noise = setup(
        field, x, nfe, grid, "edm", lambda n: (n + 1) // 2, 1, path=path,
        prediction=prediction, t0=t0, t1=t1, noise_scale=noise_scale, seed=seed,
        indices=indices, cond=cond, grid_options=grid_options,
    )  # fmt: skip
    path = counted.path
    points = times.tolist()
    steps = len(points) - 1
    gamma_max = min(noise_scale * S_churn / steps, math.sqrt(2) - 1)
    trajectory = [x] if return_trajectory else None
    with torch.no_grad():
        for i, (t, t_next) in enumerate(zip(points[:-1], points[1:], strict=True)):
            a_next, s_next, _, _ = coefficients_at(path, t_next)
            sigma = edm_sigma(path, t)
            if math.isinf(sigma):
                ev = counted.evaluate(x, t)
                x = a_next * ev.x0 + s_next * ev.epsilon
            else:
                x = _edm_step(counted, noise, x, t, sigma, t_next, i == steps - 1, gamma_max,
                              S_tmin, S_tmax, S_noise)  # fmt: skip
            if trajectory is not None:
                trajectory.append(x)
    stacked = torch.stack(trajectory) if trajectory is not None else None
    return SampleResult(x=x, nfe=counted.calls, trajectory=stacked, times=times)


def _edm_step(
    counted: VelocityField,
    noise: PerSampleNoise,
    x: Tensor,
    t: float,
    sigma: float,
    t_next: float,
    last: bool,
    gamma_max: float,
    S_tmin: float,
    S_tmax: float,
    S_noise: float,
) -> Tensor:
    """One churn + Euler (+ Heun unless ``last``) step from ``t`` (finite ``sigma~``)."""
    path = counted.path
    x_tilde = x / coefficients_at(path, t)[0]
    sigma_hat, t_hat = sigma, t
    if gamma_max > 0 and S_tmin <= sigma <= S_tmax:
        t_hat = edm_time(path, sigma * (1 + gamma_max), t)
        sigma_hat = edm_sigma(path, t_hat)
        x_tilde = x_tilde + math.sqrt(sigma_hat**2 - sigma**2) * S_noise * noise.next()
    a_hat = coefficients_at(path, t_hat)[0]
    d = counted.evaluate(a_hat * x_tilde, t_hat).epsilon
    a_next, s_next, _, _ = coefficients_at(path, t_next)
    sigma_next = s_next / a_next
    x_next = x_tilde + (sigma_next - sigma_hat) * d
    if not last:
        d_next = counted.evaluate(a_next * x_next, t_next).epsilon
        x_next = x_tilde + (sigma_next - sigma_hat) * (d + d_next) / 2
    return a_next * x_next
