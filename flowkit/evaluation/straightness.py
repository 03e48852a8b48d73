"""Straightness of a flow's trajectories (Liu et al. 2022)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowkit.paths import AffinePath
from flowkit.solvers.field import VelocityField


def straightness(
    field: Callable[..., Tensor],
    x0: Tensor,
    nfe: int = 100,
    *,
    path: AffinePath | None = None,
    prediction: str | None = None,
    reduction: str = "sum",
    cond: dict | None = None,
) -> float:
    """``S(Z) = int_0^1 E || (Z_1 - Z_0) - v(Z_t, t) ||^2 dt`` along Euler trajectories.

    The trajectory is integrated with ``nfe`` uniform Euler steps from ``x0`` and the
    integral is the average over those steps. ``S = 0`` means straight lines travelled at
    constant speed.

    Args:
        field: the flow's field (any prediction type, converted through ``path``).
        x0: ``(B, *D)`` initial noise.
        reduction: ``"sum"`` over data dimensions (the paper's ``S(Z)``) or ``"mean"``
            (per dimension, comparable across resolutions).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    velocity = VelocityField(field, path, prediction, cond)
    times = torch.linspace(0.0, velocity.path.t_max, nfe + 1).tolist()
    x, velocities = x0, []
    with torch.no_grad():
        for t, t_next in zip(times[:-1], times[1:], strict=True):
            v = velocity(x, t)
            velocities.append(v)
            x = x + (t_next - t) * v
        displacement = (x - x0) / (times[-1] - times[0])
        deviation = torch.stack([(displacement - v).pow(2) for v in velocities]).mean(0)
        per_sample = deviation.flatten(1)
        per_sample = per_sample.sum(1) if reduction == "sum" else per_sample.mean(1)
    return float(per_sample.mean())
