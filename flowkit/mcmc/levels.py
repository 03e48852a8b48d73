r"""One noise scale for every affine path: ``y = x_t / alpha(t)``, ``s = sigma(t) / alpha(t)``.

On a path ``x_t = alpha(t) x1 + sigma(t) x0`` the rescaled state ``y = x_t / alpha = x1 + s x0``
is a variance-exploding (VE) process with noise level ``s(t) = sigma(t) / alpha(t)``, which
decreases from ``s(0)`` (infinite where ``alpha(0) = 0``) to ``s(1) = 0``. Denoising MCMC runs
its chains in ``(y, s)``; the score in ``y`` is ``grad_y log p_s(y) = alpha(t) score(x_t, t)``
(through ``path.convert``), so any flowkit field serves.

:func:`time_of_level` inverts ``t -> s(t)`` per sample. Closed forms (``u = 1 - t`` is
score-SDE time, ``b0, b1`` the VP betas, ``L = -log alpha``):

- rectified: ``s = (1 - t) / t``, ``t = 1 / (1 + s)``;
- cosine: ``s = cot(pi t / 2)``, ``t = (2 / pi) atan2(1, s)``;
- VE: ``s = smin (smax / smin)^(1 - t)``, ``t = 1 - log(s / smin) / log(smax / smin)``;
- VP: ``alpha = 1 / sqrt(1 + s^2)``, ``L = log(1 + s^2) / 2``;
- sub-VP: ``sigma = 1 - alpha^2``, ``alpha = 2 / (s + sqrt(s^2 + 4))``;

and for VP / sub-VP ``L = (b1 - b0) u^2 / 4 + b0 u / 2`` is solved for ``u >= 0``
(``u = (-b0 + sqrt(b0^2 + 4 (b1 - b0) L)) / (b1 - b0)``). Any other path (DDPM tables,
user paths) is inverted by bisection in float64, which relies on ``s(t)`` decreasing.
Levels outside the path's range ``[s(t_hi), s(t_lo)]`` are clamped to its ends.

Shapes: ``s`` and ``t`` are ``(B,)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowkit.paths import AffinePath


def level_of_time(path: AffinePath, t: Tensor) -> Tensor:
    """``s(t) = sigma(t) / alpha(t)`` (``(B,)``, float64; ``inf`` where ``alpha = 0``)."""
    alpha, sigma, _, _ = path.coefficients(torch.as_tensor(t, dtype=torch.float64))
    return torch.where(alpha > 0, sigma / alpha.clamp_min(1e-300), torch.full_like(alpha, math.inf))


def _vp_time(log_inv_alpha: Tensor, beta_min: float, beta_max: float) -> Tensor:
    slope = beta_max - beta_min
    if abs(slope) < 1e-12:
        u = 2 * log_inv_alpha / beta_min
    else:
        u = (-beta_min + torch.sqrt(beta_min**2 + 4 * slope * log_inv_alpha)) / slope
    return 1 - u


def _closed_form(path: AffinePath, s: Tensor) -> Tensor | None:
    """``t(s)`` where the path has a closed form, else ``None``."""
    name, params = path.name, path.params
    if name == "rectified":
        return 1 / (1 + s)
    if name == "cosine":
        return (2 / math.pi) * torch.atan2(torch.ones_like(s), s)
    if name == "ve":
        smin, smax = params["sigma_min"], params["sigma_max"]
        return 1 - torch.log(s / smin) / math.log(smax / smin)
    if name == "vp":
        return _vp_time(0.5 * torch.log1p(s**2), params["beta_min"], params["beta_max"])
    if name == "subvp":
        alpha = 2 / (s + torch.sqrt(s**2 + 4))
        return _vp_time(-torch.log(alpha), params["beta_min"], params["beta_max"])
    return None


def _bisect(path: AffinePath, s: Tensor, lo: float, hi: float, iters: int = 100) -> Tensor:
    low = torch.full_like(s, lo)
    high = torch.full_like(s, hi)
    for _ in range(iters):
        mid = (low + high) / 2
        too_noisy = level_of_time(path, mid) > s
        low = torch.where(too_noisy, mid, low)
        high = torch.where(too_noisy, high, mid)
    return (low + high) / 2


def time_of_level(
    path: AffinePath, s: Tensor, t_lo: float = 0.0, t_hi: float | None = None
) -> Tensor:
    """The time ``t`` in ``[t_lo, t_hi]`` with ``sigma(t) / alpha(t) = s``, per sample.

    Args:
        path: any affine path (closed form for rectified, cosine, VE, VP, sub-VP; bisection
            otherwise).
        s: ``(B,)`` noise levels ``>= 0`` (0 is the data end).
        t_lo, t_hi: the admissible range (``t_hi`` defaults to ``path.t_max``); levels
            outside ``[s(t_hi), s(t_lo)]`` are clamped to the range's ends.

    Returns:
        ``(B,)`` float64 times.
    """
    t_hi = path.t_max if t_hi is None else t_hi
    s = torch.as_tensor(s, dtype=torch.float64)
    if bool((s < 0).any()) or bool(torch.isnan(s).any()):
        raise ValueError(f"noise levels must be >= 0, got min {float(s.min())}")
    t = _closed_form(path, s)
    if t is None:
        t = _bisect(path, s, t_lo, t_hi)
    return t.clamp(t_lo, t_hi)
