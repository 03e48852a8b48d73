"""Affine probability paths ``x_t = alpha(t) * x1 + sigma(t) * x0``.

flowkit's one time convention: ``t = 0`` is the source (noise ``x0 ~ N(0, I)``) and
``t = 1`` the target (data ``x1``). Diffusion schedules written in score-SDE time
``s`` (0 = data, 1 = prior) are the same paths with ``s = 1 - t``.

Shapes: ``t`` is ``(B,)``; ``x0``, ``x1``, ``x_t`` are ``(B, *D)``. Coefficients are
broadcast over the trailing data dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Schedule = Callable[[Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]
"""Maps ``t (B,)`` to ``(alpha, sigma, d_alpha/dt, d_sigma/dt)``, each ``(B,)``."""


def broadcast_like(coefficient: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample ``(B,)`` coefficient to ``(B, 1, ..., 1)`` matching ``x``."""
    return coefficient.reshape(coefficient.shape + (1,) * (x.dim() - coefficient.dim()))


@dataclass
class PathSample:
    """One draw from a path: the pair, the time, the point ``x_t`` and its velocity.

    ``x0`` is the noise (source), ``x1`` the data (target), ``t`` is ``(B,)``,
    ``xt = alpha(t) x1 + sigma(t) x0`` and ``dxt = alpha'(t) x1 + sigma'(t) x0``.
    """

    x0: Tensor
    x1: Tensor
    t: Tensor
    xt: Tensor
    dxt: Tensor


class AffinePath:
    """An affine interpolation between noise ``x0`` and data ``x1``.

    Args:
        name: a short identifier stored in configs (``"rectified"``, ``"vp"``, ...).
        schedule: ``t -> (alpha, sigma, alpha', sigma')``.
        t_max: the largest time a sampler should integrate to. Paths whose
            ``sigma'`` is singular at ``t = 1`` (VP) stop just short of it, as in
            Song et al. (score-SDE time ``s = 1e-3`` for VP, ``1e-5`` for VE). The
            earliest start depends on the prediction: :meth:`t_min`.
        params: the schedule's hyper-parameters, for reprs and saved configs.
    """

    def __init__(
        self, name: str, schedule: Schedule, t_max: float = 1.0, params: dict | None = None
    ) -> None:
        self.name = name
        self._schedule = schedule
        self.t_max = t_max
        self.params = dict(params or {})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"AffinePath({self.name}{', ' + args if args else ''})"

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(alpha, sigma, alpha', sigma')`` at times ``t (B,)``, each ``(B,)``."""
        return self._schedule(t)

    @property
    def prior_std(self) -> float:
        """``sigma(0)``: the scale of ``x_t`` at ``t = 0`` is about ``sigma(0) * x0``."""
        _, sigma, _, _ = self.coefficients(torch.zeros(1, dtype=torch.float64))
        return float(sigma)

    def t_min(self, prediction: str = "velocity") -> float:
        """The earliest time a sampler may start a field that predicts ``prediction``: 0 for
        velocity and data, the first ``t`` with ``alpha(t) >= 1e-3`` for epsilon and score
        (1e-3 on the rectified path, 0 on VP). See
        :func:`flowkit.paths.conversions.start_time` for the math."""
        from flowkit.paths.conversions import start_time

        return start_time(self, prediction)

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor) -> PathSample:
        """Interpolate: ``x_t = alpha x1 + sigma x0``, ``dx_t = alpha' x1 + sigma' x0``."""
        if x0.shape != x1.shape:
            raise ValueError(f"x0 has shape {tuple(x0.shape)} but x1 has {tuple(x1.shape)}")
        if t.shape != (x1.shape[0],):
            raise ValueError(f"t must have shape ({x1.shape[0]},), got {tuple(t.shape)}")
        alpha, sigma, d_alpha, d_sigma = (broadcast_like(c, x1) for c in self.coefficients(t))
        xt = alpha * x1 + sigma * x0
        dxt = d_alpha * x1 + d_sigma * x0
        return PathSample(x0=x0, x1=x1, t=t, xt=xt, dxt=dxt)

    def convert(self, pred: Tensor, xt: Tensor, t: Tensor, src: str, dst: str) -> Tensor:
        """Convert a prediction between ``velocity``, ``epsilon``, ``x0`` and ``score``.

        See :func:`flowkit.paths.conversions.convert` for the math and the clamping.
        """
        from flowkit.paths.conversions import convert

        return convert(self, pred, xt, t, src, dst)


def _rectified_schedule(t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return t, 1 - t, torch.ones_like(t), -torch.ones_like(t)


def rectified() -> AffinePath:
    """The straight path of rectified flow: ``x_t = t x1 + (1 - t) x0``, ``v = x1 - x0``."""
    return AffinePath("rectified", _rectified_schedule)


def _vp_mean(beta_min: float, beta_max: float, t: Tensor) -> tuple[Tensor, Tensor]:
    """VP mean coefficient ``m`` and its ``t``-derivative, in score-SDE time ``s = 1 - t``.

    ``log m(s) = -s^2 (b1 - b0) / 4 - s b0 / 2``, ``beta(s) = b0 + s (b1 - b0)``,
    ``dm/dt = -dm/ds = m beta(s) / 2``.
    """
    s = 1 - t
    log_m = -(s**2) * (beta_max - beta_min) / 4 - s * beta_min / 2
    m = torch.exp(log_m)
    beta = beta_min + s * (beta_max - beta_min)
    return m, m * beta / 2


def vp(beta_min: float = 0.1, beta_max: float = 20.0) -> AffinePath:
    """Variance-preserving path (DDPM / score-SDE VP): ``alpha = m``, ``sigma = sqrt(1 - m^2)``.

    ``sigma'(t) = -m m' / sigma`` diverges at ``t = 1``; it is evaluated with ``sigma``
    clamped at ``1e-6``, and samplers stop at ``t_max = 1 - 1e-3`` (Song et al.).
    """

    def schedule(t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        m, dm = _vp_mean(beta_min, beta_max, t)
        sigma = torch.sqrt((1 - m**2).clamp_min(0))
        d_sigma = -m * dm / sigma.clamp_min(1e-6)
        return m, sigma, dm, d_sigma

    params = {"beta_min": beta_min, "beta_max": beta_max}
    return AffinePath("vp", schedule, t_max=1 - 1e-3, params=params)


def subvp(beta_min: float = 0.1, beta_max: float = 20.0) -> AffinePath:
    """Sub-VP path (Song et al.): VP's mean ``m``, standard deviation ``sigma = 1 - m^2``."""

    def schedule(t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        m, dm = _vp_mean(beta_min, beta_max, t)
        return m, 1 - m**2, dm, -2 * m * dm

    params = {"beta_min": beta_min, "beta_max": beta_max}
    return AffinePath("subvp", schedule, t_max=1 - 1e-3, params=params)


def ve(sigma_min: float = 0.01, sigma_max: float = 50.0) -> AffinePath:
    """Variance-exploding path: ``alpha = 1``, ``sigma = smin (smax / smin)^(1 - t)``.

    Its prior is ``N(x1, sigma_max^2 I)``: start samplers from ``sigma_max * x0``
    (:attr:`AffinePath.prior_std`). Samplers stop at ``t_max = 1 - 1e-5``.
    """
    log_ratio = math.log(sigma_max / sigma_min)

    def schedule(t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        sigma = sigma_min * torch.exp((1 - t) * log_ratio)
        return torch.ones_like(t), sigma, torch.zeros_like(t), -sigma * log_ratio

    params = {"sigma_min": sigma_min, "sigma_max": sigma_max}
    return AffinePath("ve", schedule, t_max=1 - 1e-5, params=params)


def cosine() -> AffinePath:
    """Cosine (trigonometric) path: ``alpha = sin(pi t / 2)``, ``sigma = cos(pi t / 2)``."""

    def schedule(t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        angle = math.pi * t / 2
        return (
            torch.sin(angle),
            torch.cos(angle),
            math.pi / 2 * torch.cos(angle),
            -math.pi / 2 * torch.sin(angle),
        )

    return AffinePath("cosine", schedule)


PATHS: dict[str, Callable[..., AffinePath]] = {
    "rectified": rectified,
    "vp": vp,
    "subvp": subvp,
    "ve": ve,
    "cosine": cosine,
}


def get_path(name: str, **params: float) -> AffinePath:
    """Build a path by name (``rectified``, ``vp``, ``subvp``, ``ve``, ``cosine``)."""
    if name not in PATHS:
        raise ValueError(f"unknown path {name!r}; expected one of {sorted(PATHS)}")
    return PATHS[name](**params)
