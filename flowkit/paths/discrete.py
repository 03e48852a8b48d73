"""DDPM's discrete ``alphas_cumprod`` schedule as a continuous flowkit path (an edge conversion).

A DDPM / DDIM model is trained at integer timesteps ``tau in {0, ..., T-1}`` (``tau = 0`` is
the least noisy) with ``x_tau = sqrt(abar[tau]) x_data + sqrt(1 - abar[tau]) noise``. flowkit
puts timestep ``tau`` at time

    t = 1 - (tau + 1) / T,

so ``tau = T - 1`` is ``t = 0`` (the noise side) and the DDIM "previous" of ``tau = 0``
(``tau = -1``) is ``t = 1`` with ``abar = final_alpha_cumprod`` (DDIM's ``set_alpha_to_one``:
1.0 by default, or ``abar[0]``).

Between the integer points ``log abar`` is interpolated linearly in ``u = T (1 - t) = tau + 1``;
``alpha(t) = sqrt(abar)`` and ``sigma(t) = sqrt(1 - abar)``. The derivatives come from that
piecewise-linear interpolation: ``d log abar / dt`` is piecewise constant (at a knot, the slope
of the segment towards the data, the one a forward step in ``t`` enters). This is exact for
first-order and exponential integrators that only read ``alpha`` and ``sigma`` at the grid
points (DDIM, DPM-Solver++); a velocity-based solver (Euler, Heun) sees a path whose
velocity jumps at every integer timestep, fine for sampling but not a smooth VP schedule.
``sigma'`` is infinite where ``sigma = 0`` (``t = 1`` with ``final_alpha_cumprod = 1``); it is
evaluated with ``sigma`` clamped at ``1e-6``, as :func:`flowkit.paths.vp` does.

Times within ``SNAP = 1e-4`` timestep units of an integer timestep are snapped onto it, so that
the float32 times of a DDIM grid read the table exactly (the change is below float32 precision
of the coefficients).
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowkit.paths.affine import AffinePath

__all__ = ["SNAP", "DiscreteVPPath", "discrete_vp", "time_of", "timestep_of"]

SNAP = 1e-4


def timestep_of(t: Tensor | float, num_train_timesteps: int) -> Tensor | float:
    """flowkit time ``t`` -> continuous DDPM timestep ``tau = T (1 - t) - 1``, snapped onto an
    integer within :data:`SNAP` (keeps a tensor's dtype and device)."""
    tau = num_train_timesteps * (1 - t) - 1
    if isinstance(tau, Tensor):
        nearest = torch.round(tau)
        return torch.where((tau - nearest).abs() < SNAP, nearest, tau)
    nearest = round(tau)
    return float(nearest) if abs(tau - nearest) < SNAP else tau


def time_of(timestep: Tensor | float, num_train_timesteps: int) -> Tensor | float:
    """DDPM timestep ``tau`` -> flowkit time ``t = 1 - (tau + 1) / T``; ``tau = -1`` gives 1."""
    if isinstance(timestep, Tensor) and not timestep.is_floating_point():
        timestep = timestep.to(torch.float64)
    return 1 - (timestep + 1) / num_train_timesteps


class DiscreteVPPath(AffinePath):
    """The :class:`AffinePath` of a discrete DDPM schedule (see the module docstring).

    Attributes:
        alphas_cumprod: the ``(T,)`` float64 table ``abar[tau]``.
        final_alpha_cumprod: ``abar`` at ``t = 1`` (``tau = -1``).
        num_train_timesteps: ``T``.
    """

    def __init__(self, alphas_cumprod: Tensor, final_alpha_cumprod: float = 1.0) -> None:
        table = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64).flatten()
        if table.numel() < 2:
            raise ValueError(f"alphas_cumprod needs at least 2 entries, got {table.numel()}")
        if not (0 < final_alpha_cumprod <= 1) or not bool(((table > 0) & (table <= 1)).all()):
            raise ValueError("alphas_cumprod and final_alpha_cumprod must lie in (0, 1]")
        self.alphas_cumprod = table
        self.final_alpha_cumprod = float(final_alpha_cumprod)
        self.num_train_timesteps = int(table.numel())
        # knots at u = 0 (t = 1, tau = -1), u = 1 (tau = 0), ..., u = T (t = 0, tau = T - 1)
        self._abar = torch.cat([table.new_tensor([self.final_alpha_cumprod]), table])
        self._slopes = torch.diff(self._abar.log())  # d log abar / du on [k, k + 1]
        params = {
            "num_train_timesteps": self.num_train_timesteps,
            "final_alpha_cumprod": self.final_alpha_cumprod,
            "alphas_cumprod_first": float(table[0]),
            "alphas_cumprod_last": float(table[-1]),
        }
        super().__init__("discrete_vp", self._schedule, t_max=1.0, params=params)

    def _schedule(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        size = self.num_train_timesteps
        abar_knots = self._abar.to(t.device)
        slopes = self._slopes.to(t.device)
        u = (size * (1 - t.to(torch.float64))).clamp(0, size)
        nearest = torch.round(u)
        u = torch.where((u - nearest).abs() < SNAP, nearest, u)
        k = u.floor().long().clamp(0, size)
        slope_index = torch.where(u == k, k - 1, k).clamp(0, size - 1)  # data-side segment
        slope = slopes[slope_index]
        abar = abar_knots[k] * torch.exp((u - k) * slopes[k.clamp(max=size - 1)])
        abar = torch.where(u == k, abar_knots[k], abar)
        alpha = abar.sqrt()
        sigma = (1 - abar).clamp_min(0).sqrt()
        d_log_abar = -size * slope  # du/dt = -T
        d_alpha = alpha * d_log_abar / 2
        d_sigma = -abar * d_log_abar / (2 * sigma.clamp_min(1e-6))
        return tuple(c.to(t.dtype) for c in (alpha, sigma, d_alpha, d_sigma))

    def timestep_of(self, t: Tensor | float) -> Tensor | float:
        """flowkit time -> DDPM timestep (see :func:`timestep_of`)."""
        return timestep_of(t, self.num_train_timesteps)

    def time_of(self, timestep: Tensor | float) -> Tensor | float:
        """DDPM timestep -> flowkit time (see :func:`time_of`)."""
        return time_of(timestep, self.num_train_timesteps)


def discrete_vp(alphas_cumprod: Tensor, final_alpha_cumprod: float = 1.0) -> DiscreteVPPath:
    """A continuous flowkit path through DDPM's discrete schedule ``alphas_cumprod`` (``(T,)``).

    ``alpha(1 - (tau + 1) / T) = sqrt(alphas_cumprod[tau])`` exactly at every integer timestep,
    and ``alpha(1) = sqrt(final_alpha_cumprod)``; see the module docstring for the interpolation.
    """
    return DiscreteVPPath(alphas_cumprod, final_alpha_cumprod)
