"""The geometric Brownian motion (GBM) forward process of "Dale meets Langevin" (Shetty et
al. 2025): flowkit's one non-affine process.

On positive data, elementwise, in *diffusion time* ``s`` (0 = data, growing toward noise)::

    dX_s = mu X_s ds + sigma X_s dW_s,
    log X_s | x1  ~  N( log x1 + (mu - sigma^2 / 2) s,  sigma^2 s ).

Time convention. flowkit's ``t`` runs from 0 (noise) to 1 (data); the diffusion time is
``s = 1 - t``, so the process runs over ``s`` in ``[0, 1]`` as in the authors' setup (``N``
steps of size ``1 / N``; ``sigma = 0.8`` sets the noise level at ``s = 1``, no extra time
scale). A network is always called with flowkit's ``t``.

Data. Images in ``[-1, 1]`` (flowkit's range) are shifted to ``[1, 2]`` (the authors'
``[0, 1] -> [1, 2]``) by :func:`to_positive`; samples go back by :func:`from_positive`,
which clamps to ``[1, 2]`` first (the authors' output ``clamp(x, 1, 2) - 1``).

The multiplicative (Hyvärinen) score is ``x ∘ ∇_x log p(x)``. For the conditional law it is

    x_s ∘ ∇ log p(x_s | x1) = -1 - (log(x_s / x1) - (mu - sigma^2 / 2) s) / (sigma^2 s),

and for any density of ``x`` whose ``log x`` is Gaussian ``N(m, v)`` (per coordinate), it is
``-1 - (log x - m) / v``: the ``-1`` is the Jacobian of ``y = log x``.

Shapes: ``x1``, ``x_s`` are ``(B, *D)``; ``t`` and ``s`` are ``(B,)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flowkit.paths.affine import broadcast_like

__all__ = [
    "GBMProcess",
    "GBMSample",
    "LogNormal",
    "fit_lognormal",
    "from_positive",
    "to_positive",
]


def to_positive(x: Tensor) -> Tensor:
    """Images in ``[-1, 1]`` to ``[1, 2]``: ``(x + 1) / 2 + 1``."""
    return (x + 3.0) / 2.0


def from_positive(x: Tensor) -> Tensor:
    """Positive samples back to ``[-1, 1]``: ``2 (clamp(x, 1, 2) - 1) - 1``."""
    return 2.0 * x.clamp(1.0, 2.0) - 3.0


@dataclass(frozen=True)
class LogNormal:
    """An elementwise log-normal law: ``log x ~ N(mean, std^2)``, independent coordinates.

    ``mean`` and ``std`` are tensors broadcastable to one sample's shape ``D``: ``(*D)`` for
    a per-pixel fit, ``()`` for a global one.
    """

    mean: Tensor
    std: Tensor

    def sample(self, z: Tensor) -> Tensor:
        """``exp(mean + std * z)`` for standard normal ``z`` of shape ``(B, *D)``."""
        mean, std = self.mean.to(z), self.std.to(z)
        return torch.exp(mean + std * z)

    def to_config(self) -> dict[str, list | float]:
        """Plain floats / nested lists for a JSON config."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_config(cls, mean: list | float, std: list | float) -> LogNormal:
        """Inverse of :meth:`to_config` (float32 tensors); ``std`` must be >= 0."""
        mean_t = torch.as_tensor(mean, dtype=torch.float32)
        std_t = torch.as_tensor(std, dtype=torch.float32)
        if not bool(torch.isfinite(mean_t).all()) or not bool(torch.isfinite(std_t).all()):
            raise ValueError("a log-normal start must have finite mean and std")
        if bool((std_t < 0).any()):
            raise ValueError(f"a log-normal std must be >= 0, got minimum {float(std_t.min())}")
        return cls(mean_t, std_t)


def fit_lognormal(data: Tensor, per_pixel: bool = True) -> LogNormal:
    """The mean and standard deviation of ``log x`` over positive ``data`` ``(N, *D)``.

    Per pixel (``mean``, ``std`` of shape ``D``, over the ``N`` samples) or global (scalars,
    over every entry). The standard deviation is the maximum-likelihood (biased) one.

    Raises:
        ValueError: ``data`` has fewer than 2 samples or a non-positive entry.
    """
    if data.ndim < 2 or data.shape[0] < 2:
        raise ValueError(
            f"fit_lognormal needs data of shape (N >= 2, ...), got {tuple(data.shape)}"
        )
    if not bool((data > 0).all()):
        raise ValueError(
            f"fit_lognormal needs positive data, got minimum {float(data.min())}; shift images "
            "with to_positive first"
        )
    logs = data.double().log()
    if per_pixel:
        mean, std = logs.mean(0), logs.std(0, correction=0)
    else:
        mean, std = logs.mean(), logs.std(correction=0)
    return LogNormal(mean.float(), std.float())


@dataclass
class GBMSample:
    """One draw of the forward process: data ``x1``, times ``t = 1 - s``, ``s``, and ``xt``."""

    x1: Tensor
    t: Tensor
    s: Tensor
    xt: Tensor


class GBMProcess:
    """``dX = mu X ds + sigma X dW`` on positive data, ``s = 1 - t`` (see the module docstring).

    Args:
        sigma: the volatility, > 0 (the authors' default 0.8).
        mu: the drift; ``None`` gives ``sigma^2 / 2`` (the authors' default, under which
            ``log X`` has no drift).
    """

    def __init__(self, sigma: float = 0.8, mu: float | None = None) -> None:
        if isinstance(sigma, bool) or not isinstance(sigma, int | float):
            raise ValueError(f"sigma must be a number > 0, got {sigma!r}")
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be finite and > 0, got {sigma!r}")
        mu = sigma**2 / 2 if mu is None else mu
        if isinstance(mu, bool) or not isinstance(mu, int | float) or not math.isfinite(mu):
            raise ValueError(f"mu must be a finite number, got {mu!r}")
        self.sigma = float(sigma)
        self.mu = float(mu)

    def __repr__(self) -> str:
        return f"GBMProcess(sigma={self.sigma}, mu={self.mu})"

    @property
    def log_drift(self) -> float:
        """``mu - sigma^2 / 2``: the drift of ``log X``."""
        return self.mu - self.sigma**2 / 2

    @staticmethod
    def diffusion_time(t: Tensor) -> Tensor:
        """flowkit time ``t`` (1 = data) to diffusion time ``s = 1 - t`` (0 = data)."""
        return 1.0 - t

    def log_moments(self, log_x1: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of ``log X_s`` given ``log x1`` ``(B, *D)`` and ``s`` ``(B,)``."""
        s = broadcast_like(s.to(log_x1), log_x1)
        return log_x1 + self.log_drift * s, (self.sigma**2) * s.expand_as(log_x1)

    def sample(self, x1: Tensor, t: Tensor, generator: torch.Generator | None = None) -> GBMSample:
        """Draw ``X_s`` given positive data ``x1`` ``(B, *D)`` at flowkit times ``t`` ``(B,)``:
        ``x_s = x1 exp((mu - sigma^2 / 2) s + sigma sqrt(s) z)``, ``z ~ N(0, I)``."""
        if t.shape != (x1.shape[0],):
            raise ValueError(f"t must have shape ({x1.shape[0]},), got {tuple(t.shape)}")
        z = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        s = self.diffusion_time(t.to(x1))
        sb = broadcast_like(s, x1)
        xt = x1 * torch.exp(self.log_drift * sb + self.sigma * sb.sqrt() * z)
        return GBMSample(x1=x1, t=t, s=s, xt=xt)

    def conditional_score(self, xt: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """``x_s ∘ ∇ log p(x_s | x1) = -1 - (log(x_s / x1) - (mu - sigma^2/2) s) / (sigma^2 s)``
        at flowkit times ``t`` ``(B,)`` (``s = 1 - t`` must be > 0)."""
        s = broadcast_like(self.diffusion_time(t.to(xt)), xt)
        return -1.0 - (torch.log(xt / x1) - self.log_drift * s) / (self.sigma**2 * s)

    def marginal(self, data: LogNormal, s: float = 1.0) -> LogNormal:
        """The log-normal law with the first two moments of ``log X_s`` when ``log x1`` has
        those of ``data``: ``mean + (mu - sigma^2/2) s`` and ``sqrt(std^2 + sigma^2 s)``
        (exact per coordinate, since the noise is independent of the data; the law of
        ``X_s`` itself when the data are log-normal). With ``s = 1`` it is the sampler's
        start, "a log-normal fitted to the data"."""
        return LogNormal(
            data.mean + self.log_drift * s, torch.sqrt(data.std**2 + self.sigma**2 * s)
        )
