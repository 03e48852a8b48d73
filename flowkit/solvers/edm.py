r"""EDM's stochastic sampler (Karras et al. 2022, Algorithm 2) on any affine path.

EDM coordinates. Karras et al. write a diffusion as ``x = s(t) (x1 + sigma(t) n)`` with a
scale ``s(t)`` and a noise level ``sigma(t)`` (their Eq. 4 and Table 1). An affine path
``x_t = alpha x1 + sigma x0`` is that form with ``s = alpha`` and EDM noise level
``sigma~ = sigma / alpha``. The rescaled state ``x~ = x / alpha = x1 + sigma~ x0`` is
a VE process, whose probability-flow ODE is ``dx~/dsigma~ = (x~ - D(x~; sigma~)) /
sigma~``. The denoiser ``D`` is the "x0" (data) prediction, and ``(x~ - D) / sigma~`` is
exactly the epsilon prediction, so one field evaluation gives the derivative. The
sampler steps in ``(x~, sigma~)``: EDM's own choice ``sigma(t) = t, s(t) = 1`` (their
Section 3), applied to the rescaled state whatever the path's time.

Per step ``i`` of the grid ``t_0 < ... < t_N`` (the path's times, uniform by default;
``grid="edm"`` gives Karras et al.'s ``rho = 7`` noise levels mapped to times; ``sigma~``
falls along it):

1. churn (Algorithm 2, lines 4-6, in its general ``s(t)``, ``sigma(t)`` form):
   ``gamma = min(S_churn / N, sqrt(2) - 1)`` if ``S_tmin <= sigma~_i <= S_tmax`` (the
   range is on the EDM noise level ``sigma~``, as in EDM), else 0;
   ``t^ = sigma~^-1((1 + gamma) sigma~_i)``, the time ``t^ <= t_i`` of noise level
   ``sigma^ = (1 + gamma) sigma~_i`` (bisection on the path; clamped at ``t = 0``), and

       x^ = alpha(t^) / alpha(t_i) x_i + alpha(t^) sqrt(sigma^^2 - sigma~_i^2) S_noise z,

   i.e. ``x~^ = x~_i + sqrt(sigma^^2 - sigma~_i^2) S_noise z``: the noise is added to the
   rescaled state, and moving from ``t_i`` to ``t^`` rescales ``x`` by
   ``alpha(t^) / alpha(t_i)``. If ``x_i`` has the path's marginal at ``t_i``, ``x^`` has
   it at ``t^`` exactly (``S_noise = 1``);
2. Euler: ``x~_{i+1} = x~^ + (sigma~_{i+1} - sigma^) d``, ``d = epsilon_hat(x^, t^)``;
3. Heun correction, except on the last step:
   ``x~_{i+1} = x~^ + (sigma~_{i+1} - sigma^) (d + d') / 2``, ``d' = epsilon_hat`` at
   ``(x_{i+1}, t_{i+1})``, and ``x_{i+1} = alpha(t_{i+1}) x~_{i+1}``.

So ``N`` steps cost ``2 N - 1`` evaluations; a budget ``nfe`` gives ``N = (nfe + 1) // 2``
(EDM's 35 NFE = 18 steps). Where ``alpha(t_i) = 0`` (``t = 0`` on the rectified and
cosine paths) ``sigma~_i`` is infinite: there is no churn, and the step is the limit of
the Euler step, ``x_{i+1} = alpha_{i+1} D + sigma_{i+1} epsilon_hat`` (DDIM), with one
evaluation and no Heun correction (it would need ``sigma~_{i+1} - sigma^ = -inf``).

Churn has a discretization error of its own: step 1 is exact, but the Heun step then
integrates from ``sigma^`` down to ``sigma~_{i+1}``, a step longer by ``gamma sigma~_i``.
For a Gaussian target of standard deviation 0.5, with ``gamma`` at its cap ``sqrt(2) - 1``
(``S_churn = 30`` on the 40-step EDM grid, nfe = 79), Algorithm 2 itself returns a
variance 7.6% too high on the rectified path and 6.2% on VP (2.0% and 1.4% without
churn); the error falls about fourfold per doubling of steps (0.8% and 0.7% at
nfe = 319, ``gamma = 0.19``, close to EDM's ImageNet-64 ``gamma = 40 / 256``).
``tests/solvers/test_gaussian_targets.py`` computes it exactly and checks the sampler
against it.

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
from flowkit.solvers.grids import time_of_noise_level
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


def churn_times(
    path: AffinePath,
    points: Sequence[float],
    sigmas: Sequence[float],
    gamma_max: float,
    S_tmin: float,
    S_tmax: float,
) -> list[float | None]:
    """``t^_i``: the time of noise level ``(1 + gamma) sigma~_i``, ``<= t_i``, for every step.

    ``None`` where there is no churn (``gamma = 0``, ``sigma~_i`` outside
    ``[S_tmin, S_tmax]``, or infinite); otherwise one vectorised bisection for all steps
    (``sigma~`` decreases in ``t``), clamped at ``t = 0`` where ``(1 + gamma) sigma~_i``
    exceeds the path's largest noise level.
    """
    t_hats: list[float | None] = [None] * (len(points) - 1)
    churned = [
        i for i, sigma in enumerate(sigmas[:-1])
        if gamma_max > 0 and math.isfinite(sigma) and S_tmin <= sigma <= S_tmax
    ]  # fmt: skip
    if churned:
        levels = torch.tensor([sigmas[i] * (1 + gamma_max) for i in churned], dtype=torch.float64)
        found = time_of_noise_level(path, levels, 0.0, max(points[i] for i in churned))
        for i, t_hat in zip(churned, found.tolist(), strict=True):
            t_hats[i] = min(t_hat, points[i])
    return t_hats


def sample_edm(
    field: Callable[..., Tensor],
    x: Tensor,
    nfe: int | None = None,
    grid: str | Sequence[float] | Tensor = "uniform",
    *,
    path: AffinePath | None = None,
    prediction: str | None = None,
    t0: float | Tensor | None = None,
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
    if isinstance(t0, Tensor) and t0.dim() == 1:  # per-sample start times
        from flowkit.solvers.per_sample import sample_sde_per_sample, setup_per_sample

        counted, noise, end = setup_per_sample(
            field, x, nfe, grid, "edm", 1, path=path, prediction=prediction, t1=t1,
            noise_scale=noise_scale, seed=seed, indices=indices, cond=cond,
        )  # fmt: skip
        return sample_sde_per_sample(
            counted, x, "edm", grid, t0, end, (nfe + 1) // 2, noise, grid_options,
            return_trajectory, S_churn=S_churn, S_tmin=S_tmin, S_tmax=S_tmax, S_noise=S_noise,
            noise_scale=noise_scale,
        )  # fmt: skip
    counted, times, noise = setup(
        field, x, nfe, grid, "edm", lambda n: (n + 1) // 2, 1, path=path,
        prediction=prediction, t0=t0, t1=t1, noise_scale=noise_scale, seed=seed,
        indices=indices, cond=cond, grid_options=grid_options,
    )  # fmt: skip
    path = counted.path
    points = times.tolist()
    steps = len(points) - 1
    gamma_max = min(noise_scale * S_churn / steps, math.sqrt(2) - 1)
    sigmas = [edm_sigma(path, t) for t in points]
    t_hats = churn_times(path, points, sigmas, gamma_max, S_tmin, S_tmax)
    trajectory = [x] if return_trajectory else None
    with torch.no_grad():
        for i in range(steps):
            if math.isinf(sigmas[i]):
                a_next, s_next, _, _ = coefficients_at(path, points[i + 1])
                ev = counted.evaluate(x, points[i])
                x = a_next * ev.x0 + s_next * ev.epsilon
            else:
                x = _edm_step(counted, noise, x, points[i], t_hats[i], points[i + 1],
                              i == steps - 1, S_noise)  # fmt: skip
            if trajectory is not None:
                trajectory.append(x)
    stacked = torch.stack(trajectory) if trajectory is not None else None
    return SampleResult(x=x, nfe=counted.calls, trajectory=stacked, times=times)


def _edm_step(
    counted: VelocityField,
    noise: PerSampleNoise,
    x: Tensor,
    t: float,
    t_hat: float | None,
    t_next: float,
    last: bool,
    S_noise: float,
) -> Tensor:
    """One churn (unless ``t_hat`` is None) + Euler (+ Heun unless ``last``) step from ``t``,
    computed on ``x~ = x / alpha`` (module docstring)."""
    path = counted.path
    a, s, _, _ = coefficients_at(path, t)
    x_tilde = x / a
    sigma_hat = s / a
    if t_hat is None:
        t_hat = t
    else:  # x~^ = x~ + sqrt(sigma^^2 - sigma~^2) S_noise z, i.e. x^ = alpha^ x~^
        sigma, sigma_hat = sigma_hat, edm_sigma(path, t_hat)
        x_tilde = x_tilde + math.sqrt(max(sigma_hat**2 - sigma**2, 0.0)) * S_noise * noise.next()
    a_hat = coefficients_at(path, t_hat)[0]
    d = counted.evaluate(a_hat * x_tilde, t_hat).epsilon
    a_next, s_next, _, _ = coefficients_at(path, t_next)
    sigma_next = s_next / a_next
    x_next = x_tilde + (sigma_next - sigma_hat) * d
    if not last:
        d_next = counted.evaluate(a_next * x_next, t_next).epsilon
        x_next = x_tilde + (sigma_next - sigma_hat) * (d + d_next) / 2
    return a_next * x_next
