"""Fréchet distance between two Gaussians, the number behind FID.

.. math::

    d^2 = \\|\\mu_1 - \\mu_2\\|^2 + \\operatorname{tr} C_1 + \\operatorname{tr} C_2
          - 2 \\operatorname{tr}\\big((C_1^{1/2} C_2 C_1^{1/2})^{1/2}\\big)

The last trace is ``sum_i sqrt(lambda_i)`` over the eigenvalues of ``C_1 C_2``, which are
those of any symmetric PSD ``F^T C_2 F`` with ``C_1 = F F^T``. flowkit takes ``F`` from a
Cholesky factorisation of ``C_1``. When ``C_1`` is singular (fewer samples than dimensions,
``N < D``), ``F`` is its rank-revealing *pivoted* Cholesky factor (LAPACK ``dpstrf``, ``D x r``
with ``r = rank C_1 <= N - 1``; stopped at LAPACK's default tolerance ``D * eps * max diag``),
so the symmetric product is ``r x r`` and the rank-deficient path costs about what the
full-rank one does (one factorisation, one product, one ``eigvalsh``) instead of a full
``eigh`` with eigenvectors (4x an ``eigvalsh`` at ``D = 2048``). Off the CPU (no ``dpstrf``)
the factor comes from ``eigh``, truncated to the eigenvalues above ``D * eps * lambda_max``.
It then sums the square roots of ``eigvalsh`` of the symmetric product. Everything is real
float64: no ``sqrtm`` of a non-symmetric matrix, no complex parts to discard, no NaN on
rank-deficient covariances. Eigenvalues below ``D * eps * lambda_max`` (rounding noise,
clamped negatives included) count as 0.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray


class GaussianStats(Protocol):
    """Anything with ``mean`` ``(D,)``, ``covariance`` ``(D, D)`` and an ``extractor`` name."""

    extractor: str

    @property
    def mean(self) -> Tensor: ...

    @property
    def covariance(self) -> Tensor: ...


def _as_float64(name: str, x: ArrayLike, device: torch.device | None) -> Tensor:
    if not isinstance(x, (Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    t = torch.as_tensor(x).detach().to(device=device, dtype=torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    return t


def _psd_factor(c: Tensor) -> Tensor | None:
    """Lower Cholesky factor ``L`` with ``L L^T = c``; None when ``c`` is not positive definite."""
    factor, info = torch.linalg.cholesky_ex(c)
    return factor if int(info) == 0 else None


def _low_rank_factor(c: Tensor) -> Tensor:
    """``F`` (``D x r``) with ``F F^T = c`` up to rounding, ``r`` the numerical rank of the
    symmetric PSD ``c``: pivoted Cholesky on a CPU, truncated ``eigh`` elsewhere."""
    if c.device.type == "cpu":
        from scipy.linalg import lapack

        packed, piv, rank, info = lapack.dpstrf(c.numpy(), lower=1)
        if info >= 0:
            lower = torch.from_numpy(np.tril(packed[:, :rank]))
            factor = torch.empty_like(lower)
            factor[torch.from_numpy(piv.astype(np.int64) - 1)] = lower  # c = P L L^T P^T
            return factor
    w, v = torch.linalg.eigh(c)
    keep = w > w.amax() * c.shape[0] * torch.finfo(w.dtype).eps
    return v[:, keep] * w[keep].sqrt()


def trace_sqrt_product(cov1: Tensor, cov2: Tensor, rank_deficient: bool = False) -> Tensor:
    """``tr((C_1^{1/2} C_2 C_1^{1/2})^{1/2})`` for symmetric PSD float64 ``(D, D)`` inputs;
    ``rank_deficient`` skips the (failing) plain Cholesky attempt on ``cov1``."""
    factor = None if rank_deficient else _psd_factor(cov1)
    if factor is None:  # singular: a D x rank factor, the product only rank x rank
        factor = _low_rank_factor(cov1)
    if factor.shape[1] == 0:
        return cov1.new_zeros(())
    product = factor.T @ cov2 @ factor
    lam = torch.linalg.eigvalsh((product + product.T) / 2)
    tol = lam.amax().clamp_min(0.0) * lam.shape[0] * torch.finfo(lam.dtype).eps
    return torch.where(lam > tol, lam, 0.0).sqrt().sum()


def frechet_distance(
    mu1: ArrayLike,
    cov1: ArrayLike,
    mu2: ArrayLike,
    cov2: ArrayLike,
    rank_deficient: bool = False,
) -> float:
    """Squared Fréchet (2-Wasserstein) distance between ``N(mu1, cov1)`` and ``N(mu2, cov2)``.

    Args:
        mu1, mu2: means ``(D,)``; tensors or numpy arrays.
        cov1, cov2: symmetric PSD covariances ``(D, D)`` (symmetrised here).
        rank_deficient: ``cov1`` is known to be singular (from at most ``D`` samples): go
            straight to its pivoted Cholesky factor instead of first trying a plain Cholesky
            factorisation that fails (same value either way, about a third less time).

    Returns:
        ``||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr((C1^{1/2} C2 C1^{1/2})^{1/2})`` in float64,
        computed on ``cov1``'s device when it is a tensor.
    """
    device = cov1.device if isinstance(cov1, Tensor) else None
    mu1, mu2 = _as_float64("mu1", mu1, device), _as_float64("mu2", mu2, device)
    cov1, cov2 = _as_float64("cov1", cov1, device), _as_float64("cov2", cov2, device)
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(
            f"mu1 and mu2 must be vectors of the same length, got {tuple(mu1.shape)} and "
            f"{tuple(mu2.shape)}"
        )
    d = mu1.shape[0]
    for name, c in (("cov1", cov1), ("cov2", cov2)):
        if c.shape != (d, d):
            raise ValueError(
                f"{name} must have shape ({d}, {d}) to match the means, got {tuple(c.shape)}"
            )
    cov1, cov2 = (cov1 + cov1.T) / 2, (cov2 + cov2.T) / 2
    mean_term = (mu1 - mu2).square().sum()
    root = trace_sqrt_product(cov1, cov2, rank_deficient)
    value = mean_term + cov1.trace() + cov2.trace() - 2 * root
    return float(value)


def fid_from_stats(a: GaussianStats, b: GaussianStats) -> float:
    """Fréchet distance between two statistics objects (``FeatureStats`` / ``ReferenceStats``).

    Raises:
        ValueError: the two were computed with different feature extractors (``"unknown"``
            matches anything, as plain pytorch-fid files carry no name).
    """
    ea, eb = getattr(a, "extractor", "unknown"), getattr(b, "extractor", "unknown")
    if "unknown" not in (ea, eb) and ea != eb:
        raise ValueError(
            f"statistics come from different feature extractors: {ea!r} and {eb!r}; "
            "FID is only meaningful between features of the same network"
        )
    # a covariance of n <= D samples has rank <= n - 1 < D: factor that side, skip Cholesky
    d = int(a.mean.shape[0])
    na, nb = getattr(a, "count", None), getattr(b, "count", None)
    if nb is not None and nb <= d and (na is None or na > nb):
        return frechet_distance(b.mean, b.covariance, a.mean, a.covariance, rank_deficient=True)
    deficient = na is not None and na <= d
    return frechet_distance(a.mean, a.covariance, b.mean, b.covariance, deficient)
