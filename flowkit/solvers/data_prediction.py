"""Samplers that step with the data prediction ``x1_hat`` (the "x0" prediction).

Each takes one field evaluation per step on a grid ``t_0 < ... < t_N`` and work on any
affine path ``x_t = alpha x1 + sigma x0``.

DPM-Solver++ (2M) (Lu et al. 2022), with ``lambda = log(alpha / sigma)`` and
``h_i = lambda_i - lambda_{i-1}``: the exact solution of the probability-flow ODE with the
data prediction held at ``D`` over one step is

    x_i = (sigma_i / sigma_{i-1}) x_{i-1} + (alpha_i - sigma_i alpha_{i-1} / sigma_{i-1}) D

(the DDIM step; method ``"ddim"`` takes it on every interval). The first step uses
``D = D_{i-1}``; later steps the second-order multistep combination
``D = (1 + 1 / (2 r)) D_{i-1} - D_{i-2} / (2 r)``, ``r = h_{i-1} / h_i``; as diffusers does
with ``lower_order_final`` for short schedules, the last step is first order. Written in
ratios of ``alpha`` and ``sigma``, the step stays finite where ``lambda`` is infinite
(``alpha(0) = 0`` or ``sigma(1) = 0`` on the rectified path).

The "new Euler" sampler of 2-RF++ (Lee et al. 2024) predicts ``x1_hat`` and re-mixes it
with the *initial* noise instead of the predicted one:
``x_{t'} = alpha(t') x1_hat + sigma(t') z0``, with ``z0 = x_{t_0} / sigma(t_0)`` (paths whose
``alpha(t_0) = 0``, e.g. the rectified path from ``t = 0``, or up to ``START_ALPHA = 1e-3``, where
an epsilon or score field starts: ``x_{t_0}`` is then taken as pure noise, as the sampler's
start from noise at ``t_0`` already does).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowkit.paths.conversions import START_ALPHA
from flowkit.solvers.field import VelocityField


def _scalars(v: VelocityField, t: float) -> tuple[float, float]:
    alpha, sigma, _, _ = v.path.coefficients(torch.tensor([t], dtype=torch.float64))
    return float(alpha), float(sigma)


def _log_snr(alpha: float, sigma: float) -> float:
    if alpha <= 0:
        return -math.inf
    return math.inf if sigma <= 0 else math.log(alpha / sigma)


def run_dpm_solver_pp(
    v: VelocityField,
    x: Tensor,
    times: list[float],
    trajectory: list[Tensor] | None,
    lower_order_final: bool = True,
) -> Tensor:
    """DPM-Solver++ (2M) over ``times``; see the module docstring."""
    previous_d, previous_h = None, None
    for i, (t, t_next) in enumerate(zip(times[:-1], times[1:], strict=True)):
        (d,) = v.predict(x, t, "data")
        a0, s0 = _scalars(v, t)
        a1, s1 = _scalars(v, t_next)
        h = _log_snr(a1, s1) - _log_snr(a0, s0)
        last = i == len(times) - 2
        use_second_order = previous_d is not None and not (last and lower_order_final)
        if use_second_order and math.isfinite(previous_h) and math.isfinite(h) and h > 0:
            r = previous_h / h
            d_combined = (1 + 1 / (2 * r)) * d - previous_d / (2 * r)
        else:
            d_combined = d
        if s0 <= 0:
            raise ValueError(f"DPM-Solver++ cannot start a step at t={t}, where sigma(t) = 0")
        x = (s1 / s0) * x + (a1 - s1 * a0 / s0) * d_combined
        previous_d, previous_h = d, h
        if trajectory is not None:
            trajectory.append(x)
    return x


def run_ddim(
    v: VelocityField, x: Tensor, times: list[float], trajectory: list[Tensor] | None
) -> Tensor:
    """DDIM (eta = 0): the first-order data-prediction step on every interval, one evaluation
    per step, ``x_i = (s_i / s_{i-1}) x + (a_i - s_i a_{i-1} / s_{i-1}) D_{i-1}``."""
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        (d,) = v.predict(x, t, "data")
        a0, s0 = _scalars(v, t)
        a1, s1 = _scalars(v, t_next)
        if s0 <= 0:
            raise ValueError(f"DDIM cannot start a step at t={t}, where sigma(t) = 0")
        x = (s1 / s0) * x + (a1 - s1 * a0 / s0) * d
        if trajectory is not None:
            trajectory.append(x)
    return x


def run_new_euler(
    v: VelocityField, x: Tensor, times: list[float], trajectory: list[Tensor] | None
) -> Tensor:
    """2-RF++'s "new Euler": ``x_{t'} = alpha(t') x1_hat + sigma(t') z0``."""
    a0, s0 = _scalars(v, times[0])
    if a0 > START_ALPHA * (1 + 1e-9) or s0 <= 0:
        raise ValueError(
            f"new_euler needs a start where x is pure noise (alpha(t0) <= {START_ALPHA}), got "
            f"alpha={a0:.3g} at t0={times[0]}; start at t0=0 on a path with alpha(0) = 0"
        )
    z0 = x / s0
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        (x1_hat,) = v.predict(x, t, "data")
        a1, s1 = _scalars(v, t_next)
        x = a1 * x1_hat + s1 * z0
        if trajectory is not None:
            trajectory.append(x)
    return x
