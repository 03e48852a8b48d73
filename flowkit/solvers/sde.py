r"""Stochastic samplers for affine paths, from ``t0`` (noise) to ``t1`` (data).

The SDE family. Let ``p_t`` be the marginal of ``x_t = alpha(t) x1 + sigma(t) x0`` and
``v`` the probability-flow velocity (``dx = v dt`` transports ``p_0`` onto ``p_1``). For
any ``eps(t) >= 0``,

    dx = [v(x, t) + eps(t)^2 / 2 * score(x, t)] dt + eps(t) dW          (t increasing)

has the same marginals: its Fokker-Planck equation adds
``-div(p eps^2/2 grad log p) + eps^2/2 lap p = 0`` to the continuity equation of ``v``.
Because ``score = -epsilon_hat / sigma``, the drift is computed as
``v - eps^2 / (2 sigma) * epsilon_hat``, with no division by ``sigma`` left to blow up.
Velocity and epsilon at one ``(x, t)`` both come from ONE network output
(:meth:`VelocityField.evaluate`), so a step costs one evaluation.

The path's own reverse diffusion. The noising process that produces the path runs
from data (``t = 1``) to noise in time ``tau = -t`` with linear drift,
``dx = f x dtau + g dW``. Matching the mean ``alpha x1`` gives ``f = -alpha'/alpha``;
matching the variance, ``d(sigma^2)/dtau = 2 f sigma^2 + g^2``, gives

    g(t)^2 = 2 sigma (sigma alpha'/alpha - sigma').

Its time reversal is the family member ``eps = g`` (Anderson 1982; Song et al. 2021).
Checks (score-SDE time ``s = 1 - t``, ``m`` the VP mean): VP ``g^2 = beta(s)``; sub-VP
``g^2 = beta(s) (1 - m^4)``; VE ``g^2 = 2 sigma^2 log(smax/smin) = d sigma^2/ds``;
rectified ``g^2 = 2 (1 - t) / t``; cosine ``g^2 = pi cot(pi t / 2)``. The last two are
infinite at ``t = 0``, where ``alpha(0) = 0``.

Methods (all share one signature, :func:`sample_sde`):

- ``"euler_maruyama"``: the reverse SDE, ``eps = noise_scale * g``; one evaluation/step.
- ``"flow_sde"``: a flow with tunable noise, ``eps = noise_scale * sigma(t)``. The score
  term is then ``-(noise_scale^2 / 2) sigma epsilon_hat``: bounded on all of ``[0, 1]``
  on every path (no singularity at ``alpha = 0``), largest at the noise end and zero at
  the data end, with a stiffness ``h eps^2 / (2 sigma^2) = h noise_scale^2 / 2`` that
  never depends on the schedule. It is the noise of the "x_t-is-noisy-by-sigma"
  view of a flow (it re-noises at the rate the path denoises), unlike
  ``euler_maruyama``, which is the diffusion's own reverse process. (On VE the two
  coincide up to the constant ``sqrt(2 log(smax/smin))``.)
- ``"edm"``: Karras et al.'s stochastic sampler (:mod:`flowkit.solvers.edm`).
- ``"pc"``: Song et al.'s predictor-corrector (:mod:`flowkit.solvers.predictor_corrector`).

Start and end (``euler_maruyama``, ``flow_sde`` and the predictor of ``pc``):

- ``t0`` defaults to the field's start time, as in ``sample_ode``: 0 for velocity and data
  predictions on every path, so the same ``x ~ N(0, I)`` (times ``path.prior_std``) starts the
  ODE and the SDE samplers; for epsilon and score predictions on paths with ``alpha(0) = 0`` the
  first ``t`` with ``alpha(t) >= 1e-3`` (``path.t_min``), since converting them divides by
  ``alpha``. An earlier explicit ``t0`` is an error. Where ``alpha(t) = 0`` (rectified, cosine
  at ``t = 0``) ``g`` is infinite; more generally Euler-Maruyama's score step overshoots the
  denoised mean once ``r = h eps^2 / (2 sigma^2) > 1`` (its factor on ``x`` is ``1 - r`` for
  Gaussian data) and diverges for ``r > 2``. Such a step is taken noise-free (``eps = 0`` on
  that interval, a member of the same family, so the marginals are unchanged): on the rectified
  path the steps from ``t = 0`` and from ``t = h``, then noise from ``t = 2h`` on, where ``r = 1
  / (2 (1 - 2h)) < 1``. Starting at a small positive time instead (Liu et al.'s ``1e-3``) would
  put the first stochastic step where ``r = h / t0 >> 2`` and explode, and would start from the
  wrong prior; it remains available through ``t0`` (its first steps are then noise-free too).
- The last step is noise-free (``eps = 0`` on the last interval, again the same
  marginals): a probability-flow Euler step, the standard "no noise on the last step",
  which on the rectified path is exactly the Tweedie denoising jump
  ``x + (1 - t) v = E[x1 | x_t]``. ``t1`` defaults to ``path.t_max``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from flowkit.paths import AffinePath
from flowkit.solvers.field import Evaluation, VelocityField
from flowkit.solvers.grids import time_grid
from flowkit.solvers.increments import PerSampleNoise
from flowkit.solvers.names import SDE_METHODS
from flowkit.solvers.result import SampleResult

_METHOD_OPTIONS = {
    "euler_maruyama": (),
    "flow_sde": (),
    "edm": ("S_churn", "S_tmin", "S_tmax", "S_noise"),
    "pc": ("snr", "n_corrector_steps"),
}


def coefficients_at(path: AffinePath, t: float) -> tuple[float, float, float, float]:
    """``(alpha, sigma, alpha', sigma')`` at one time, as Python floats (float64)."""
    values = path.coefficients(torch.tensor([t], dtype=torch.float64))
    return tuple(float(c[0]) for c in values)  # type: ignore[return-value]


def reverse_diffusion_sq(path: AffinePath, t: float) -> float:
    """``g(t)^2 = 2 sigma (sigma alpha'/alpha - sigma')``; ``inf`` where ``alpha = 0``."""
    a, s, da, ds = coefficients_at(path, t)
    return math.inf if a <= 0 else 2 * s * (s * da / a - ds)


def _diffusion(method: str, path: AffinePath, t: float, noise_scale: float) -> float:
    """``eps(t)^2`` of ``method`` (``euler_maruyama``: ``g^2``; ``flow_sde``: ``sigma^2``)."""
    if noise_scale == 0:
        return 0.0
    if method == "flow_sde":
        return (noise_scale * coefficients_at(path, t)[1]) ** 2
    return noise_scale**2 * reverse_diffusion_sq(path, t)


def reverse_sde_step(
    ev: Evaluation, x: Tensor, h: float, eps_sq: float, sigma: float, noise: PerSampleNoise
) -> Tensor:
    """One Euler-Maruyama step ``x + h (v - eps^2/(2 sigma) eps_hat) + eps sqrt(h) z``.

    The step is the noise-free probability-flow Euler step ``x + h v`` when
    ``eps^2 = 0`` or when ``r = h eps^2 / (2 sigma^2) > 1`` (see the module docstring).
    """
    if eps_sq == 0 or sigma <= 0 or not h * eps_sq / (2 * sigma**2) <= 1:
        return x + h * ev.velocity
    drift = ev.velocity - (eps_sq / (2 * sigma)) * ev.epsilon
    return x + h * drift + math.sqrt(eps_sq * h) * noise.next()


def setup(
    field: Callable[..., Tensor],
    x: Tensor,
    nfe: int | None,
    grid: str | Sequence[float] | Tensor,
    method: str,
    steps_for: Callable[[int], int],
    min_nfe: int,
    *,
    path: AffinePath | None,
    prediction: str | None,
    t0: float | None,
    t1: float | None,
    noise_scale: float,
    seed: int,
    indices: Sequence[int] | Tensor | None,
    cond: dict | None,
    grid_options: dict | None = None,
) -> tuple[VelocityField, Tensor, PerSampleNoise]:
    """Shared checks: the counting field, the time grid and the per-sample noise."""
    counted = VelocityField(field, path, prediction, cond)
    if not noise_scale >= 0:
        raise ValueError(f"noise_scale must be >= 0, got noise_scale={noise_scale}")
    if isinstance(grid, str):
        if nfe is None or nfe < min_nfe:
            raise ValueError(
                f"method {method!r} needs nfe >= {min_nfe}, got nfe={nfe}",
            )
        t0 = counted.start_time if t0 is None else t0
        t1 = counted.path.t_max if t1 is None else t1
        if not t0 < t1:
            raise ValueError(f"need t0 < t1, got t0={t0}, t1={t1}")
        if grid == "uniform" and not grid_options:
            times = time_grid(grid, steps_for(nfe), t0, t1)
        else:  # named grids may follow the path (the EDM grid follows sigma / alpha)
            times = time_grid(grid, steps_for(nfe), t0, t1, counted.path, **(grid_options or {}))
    else:
        times = time_grid(grid, 0)
    counted.check_start(times[0], "sample_sde")
    if indices is None:
        indices = range(x.shape[0])
    indices = [int(i) for i in indices]
    if len(indices) != x.shape[0]:
        raise ValueError(f"indices has {len(indices)} entries for a batch of {x.shape[0]}")
    noise = PerSampleNoise(x.shape[1:], indices, seed, x.device, x.dtype)
    return counted, times, noise


def check_options(method: str, options: dict) -> None:
    unknown = sorted(set(options) - set(_METHOD_OPTIONS[method]))
    if unknown:
        allowed = list(_METHOD_OPTIONS[method]) or "none"
        raise ValueError(f"method {method!r} got unknown options {unknown}; it takes {allowed}")


def sample_sde(
    field: Callable[..., Tensor],
    x: Tensor,
    nfe: int | None = None,
    method: str = "euler_maruyama",
    grid: str | Sequence[float] | Tensor = "uniform",
    *,
    path: AffinePath | None = None,
    prediction: str | None = None,
    t0: float | Tensor | None = None,
    t1: float | None = None,
    noise_scale: float = 1.0,
    seed: int = 0,
    indices: Sequence[int] | Tensor | None = None,
    grid_options: dict | None = None,
    return_trajectory: bool = False,
    cond: dict | None = None,
    **method_options: float,
) -> SampleResult:
    """Sample an SDE of ``field`` from ``x`` at ``t0`` to ``t1`` (see the module docstring).

    Args:
        field: ``field(x, t, **cond)`` with ``t`` of shape ``(B,)``.
        x: ``(B, *D)`` the initial state (``N(0, I)`` noise, times ``path.prior_std``).
        nfe: the evaluation budget: ``euler_maruyama`` and ``flow_sde`` take ``nfe``
            steps, ``edm`` ``(nfe + 1) // 2`` (2 per step, 1 on the last), ``pc``
            ``nfe // (1 + n_corrector_steps)``. ``SampleResult.nfe`` counts the calls.
        method: ``"euler_maruyama"``, ``"flow_sde"``, ``"edm"`` or ``"pc"``.
        grid: ``"uniform"``, another named grid of :func:`~flowkit.solvers.grids.time_grid`
            (e.g. ``"edm"``, built on ``path``; its options in ``grid_options``), or an
            explicit increasing list of times (then ``nfe`` is unused).
        path, prediction: how to read the field's output (defaults: rectified path and
            ``field.prediction`` or ``"velocity"``).
        t0, t1: the time span; defaults the field's start time (``path.t_min(prediction)``,
            0 unless an epsilon or score field would divide by ``alpha(0) = 0``) and
            ``path.t_max``. A ``(B,)`` tensor ``t0`` starts each sample at its own time
            (``euler_maruyama``, ``flow_sde``, ``edm``; :mod:`flowkit.solvers.per_sample`).
        noise_scale: multiplies the diffusion ``eps(t)`` (0 gives the ODE); for ``edm``
            it multiplies ``S_churn``.
        seed, indices: sample ``k`` of the batch draws its increments from the generator
            of ``(seed, indices[k])`` (:mod:`flowkit.solvers.increments`); ``indices``
            defaults to ``range(B)``.
        return_trajectory: keep the state at every grid time.
        cond: keyword arguments passed to every field call.
        method_options: ``edm``: ``S_churn``, ``S_tmin``, ``S_tmax``, ``S_noise``;
            ``pc``: ``snr``, ``n_corrector_steps``.
    """
    if method not in SDE_METHODS:
        raise ValueError(f"unknown SDE method {method!r}; expected one of {list(SDE_METHODS)}")
    check_options(method, method_options)
    if method == "pc" and isinstance(t0, Tensor) and t0.dim() == 1:
        raise ValueError("per-sample t0 takes euler_maruyama, flow_sde or edm, not method 'pc'")
    common = dict(
        path=path, prediction=prediction, t0=t0, t1=t1, noise_scale=noise_scale, seed=seed,
        indices=indices, grid_options=grid_options, return_trajectory=return_trajectory,
        cond=cond,
    )  # fmt: skip
    if method == "edm":
        from flowkit.solvers.edm import sample_edm

        return sample_edm(field, x, nfe, grid, **common, **method_options)
    if method == "pc":
        from flowkit.solvers.predictor_corrector import sample_pc

        return sample_pc(field, x, nfe, grid, **common, **method_options)  # type: ignore[arg-type]
    if isinstance(t0, Tensor) and t0.dim() == 1:  # per-sample start times
        from flowkit.solvers.per_sample import sample_sde_per_sample, setup_per_sample

        counted, noise, end = setup_per_sample(
            field, x, nfe, grid, method, 1, path=path, prediction=prediction, t1=t1,
            noise_scale=noise_scale, seed=seed, indices=indices, cond=cond,
        )  # fmt: skip
        return sample_sde_per_sample(
            counted, x, method, grid, t0, end, nfe, noise, grid_options, return_trajectory,
            diffusion_sq=lambda t: _diffusion(method, counted.path, t, noise_scale),
        )  # fmt: skip
    counted, times, noise = setup(
        field, x, nfe, grid, method, lambda n: n, 1, path=path, prediction=prediction,
        t0=t0, t1=t1, noise_scale=noise_scale, seed=seed, indices=indices, cond=cond,
        grid_options=grid_options,
    )  # fmt: skip
    points = times.tolist()
    trajectory = [x] if return_trajectory else None
    with torch.no_grad():
        for i, (t, t_next) in enumerate(zip(points[:-1], points[1:], strict=True)):
            last = i == len(points) - 2
            eps_sq = 0.0 if last else _diffusion(method, counted.path, t, noise_scale)
            sigma = coefficients_at(counted.path, t)[1]
            x = reverse_sde_step(counted.evaluate(x, t), x, t_next - t, eps_sq, sigma, noise)
            if trajectory is not None:
                trajectory.append(x)
    stacked = torch.stack(trajectory) if trajectory is not None else None
    return SampleResult(x=x, nfe=counted.calls, trajectory=stacked, times=times)
