r"""Per-sample start times for the data-prediction steppers: DDIM and DPM-Solver++ (2M).

The scalar methods of :mod:`flowkit.solvers.data_prediction`, with every coefficient made a
``(B,)`` tensor: sample ``b`` steps on row ``b`` of the ``(B, K + 1)`` grid with

    x_i = (sigma_i / sigma_{i-1}) x_{i-1} + (alpha_i - sigma_i alpha_{i-1} / sigma_{i-1}) D,

``D`` the data prediction at ``t_{i-1}`` (DDIM; DPM-Solver++'s first step and, with
``lower_order_final``, its last) or the 2M combination
``D = (1 + 1 / (2 r)) D_{i-1} - D_{i-2} / (2 r)``, ``r = h_{i-1} / h_i`` with
``h = lambda_i - lambda_{i-1}``, ``lambda = log(alpha / sigma)``. Where a sample's ``h`` or
``h_{i-1}`` is not finite (``alpha = 0`` or ``sigma = 0`` at an end of its step) that sample
takes the first-order step, as the scalar method does. One batched field call per step, so
``nfe`` is what one sample alone costs; the result equals integrating each sample alone up
to float rounding. ``new_euler`` re-mixes with the noise at ``alpha(t0) = 0`` and has no
meaning from a per-sample start in the middle of the path: it is refused.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowkit.paths.affine import broadcast_like
from flowkit.solvers.field import VelocityField

PER_SAMPLE_DATA_METHODS = ("ddim", "dpm_solver_pp")


def _coefficients(v: VelocityField, t: Tensor) -> tuple[Tensor, Tensor]:
    alpha, sigma, _, _ = v.path.coefficients(t.to(torch.float64))
    return alpha.to(torch.float64), sigma.to(torch.float64)


def _log_snr(alpha: Tensor, sigma: Tensor) -> Tensor:
    """``log(alpha / sigma)``: ``-inf`` where ``alpha = 0``, ``+inf`` where ``sigma = 0``."""
    ratio = alpha.clamp_min(0) / sigma.clamp_min(0)
    return torch.where(alpha <= 0, -torch.inf, ratio.log())


def run_data_prediction_per_sample(
    v: VelocityField,
    x: Tensor,
    times: Tensor,
    method: str,
    trajectory: list[Tensor] | None,
    lower_order_final: bool = True,
) -> Tensor:
    """``method`` (``"ddim"`` or ``"dpm_solver_pp"``), sample ``b`` on ``times[b]``.

    Args:
        v: the counting field.
        x: ``(B, *D)`` states at ``times[:, 0]``.
        times: ``(B, K + 1)`` float64 grids, increasing along each row.
        trajectory: when a list, the state after every step is appended.
    """
    if method not in PER_SAMPLE_DATA_METHODS:
        raise ValueError(f"method {method!r} is not one of {list(PER_SAMPLE_DATA_METHODS)}")
    steps = times.shape[1] - 1
    v.check_start(times[:, 0])
    previous_d: Tensor | None = None
    previous_h: Tensor | None = None
    with torch.no_grad():
        for i in range(steps):
            t, t_next = times[:, i], times[:, i + 1]
            (d,) = v.predict(x, t.to(device=x.device, dtype=x.dtype), "data")
            a0, s0 = _coefficients(v, t)
            a1, s1 = _coefficients(v, t_next)
            if bool((s0 <= 0).any()):
                raise ValueError(
                    f"{method} cannot start a step where sigma(t) = 0 (t = {float(t.max())})"
                )
            h = _log_snr(a1, s1) - _log_snr(a0, s0)
            combined = d
            last = i == steps - 1
            second_order = method == "dpm_solver_pp" and not (last and lower_order_final)
            if second_order and previous_d is not None and previous_h is not None:
                usable = previous_h.isfinite() & h.isfinite() & (h > 0)
                weight = torch.where(usable, 1 / (2 * previous_h / h), 0.0)
                weight = broadcast_like(weight.to(device=x.device, dtype=x.dtype), x)
                combined = (1 + weight) * d - weight * previous_d
            ratio = broadcast_like((s1 / s0).to(device=x.device, dtype=x.dtype), x)
            gain = broadcast_like((a1 - s1 * a0 / s0).to(device=x.device, dtype=x.dtype), x)
            x = ratio * x + gain * combined
            previous_d, previous_h = d, h
            if trajectory is not None:
                trajectory.append(x)
    return x
