"""Kernel Inception Distance: unbiased MMD^2 with a polynomial kernel over random subsets.

For subsets ``X = {x_i}``, ``Y = {y_j}`` of ``m`` features each and the kernel
``k(x, y) = (gamma x.y + coef0)^degree`` (default ``gamma = 1/d``, cubic; Bińkowski et al.,
2018), the unbiased estimator is

.. math::

    \\widehat{MMD}^2_u = \\frac{1}{m(m-1)} \\sum_{i \\ne j} [k(x_i, x_j) + k(y_i, y_j)]
                      - \\frac{2}{m^2} \\sum_{i, j} k(x_i, y_j),

whose expectation is the population MMD^2 (0 for identical distributions). KID is its
mean over ``num_subsets`` subsets drawn without replacement within a subset, reported
with the (population) standard deviation over subsets, as torch-fidelity and torchmetrics
do. Computed in float64: the cubic kernel makes the three sums large and nearly equal.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor


def polynomial_mmd2(
    x: Tensor, y: Tensor, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> Tensor:
    """Unbiased ``MMD^2_u`` between ``x`` ``(m, d)`` and ``y`` ``(m, d)`` (a 0-d tensor)."""
    m = x.shape[0]
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    k_xx = (x @ x.T * gamma + coef0).pow_(degree)
    k_yy = (y @ y.T * gamma + coef0).pow_(degree)
    k_xy = (x @ y.T * gamma + coef0).pow_(degree)
    within = k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()
    return within / (m * (m - 1)) - 2 * k_xy.sum() / (m * m)


def kid(
    features_a: Tensor,
    features_b: Tensor,
    num_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """KID between feature sets ``features_a`` ``(N, d)`` and ``features_b`` ``(M, d)``.

    Args:
        num_subsets: number of random subset pairs.
        subset_size: ``m``; clipped (with a warning) to ``min(N, M)``.
        degree, gamma, coef0: the kernel ``(gamma x.y + coef0)^degree``; ``gamma=None``
            means ``1 / d``.
        seed: seeds the subset draws (a private generator; global RNG untouched).

    Returns:
        ``(mean, std)`` of ``MMD^2_u`` over the subsets.
    """
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(
            f"features must be (N, d) and (M, d) with the same d, got {tuple(features_a.shape)} "
            f"and {tuple(features_b.shape)}"
        )
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be at least 1, got {num_subsets}")
    n_a, n_b = features_a.shape[0], features_b.shape[0]
    m = subset_size
    if m > min(n_a, n_b):
        m = min(n_a, n_b)
        warnings.warn(
            f"subset_size={subset_size} exceeds the smaller feature set ({n_a} and {n_b} "
            f"samples); using subset_size={m}",
            stacklevel=2,
        )
    if m < 2:
        raise ValueError(f"KID needs subsets of at least 2 samples, got subset_size={m}")
    a = features_a.detach().double()
    b = features_b.detach().to(a.device, torch.float64)
    g = torch.Generator().manual_seed(seed)
    scores = torch.empty(num_subsets, dtype=torch.float64)
    for s in range(num_subsets):
        ia = torch.randperm(n_a, generator=g)[:m].to(a.device)
        ib = torch.randperm(n_b, generator=g)[:m].to(a.device)
        scores[s] = polynomial_mmd2(a[ia], b[ib], degree, gamma, coef0).cpu()
    return float(scores.mean()), float(scores.std(unbiased=False))
