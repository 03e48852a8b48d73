"""Sliced Wasserstein distance between two sample sets."""

from __future__ import annotations

import torch
from torch import Tensor


def sliced_wasserstein(
    x: Tensor, y: Tensor, num_projections: int = 512, p: int = 2, seed: int = 0
) -> float:
    """``SW_p(x, y) = (E_theta W_p^p(<theta, x>, <theta, y>))^(1/p)``, theta uniform on the sphere.

    Each 1-D Wasserstein distance is computed exactly from sorted projections; sets of
    different sizes are compared at ``max(N, M)`` common quantile levels. Directions
    come from a generator seeded by ``seed``, so the value is deterministic.

    Args:
        x: ``(N, *D)`` samples; flattened to ``(N, d)``.
        y: ``(M, *D)`` samples with the same trailing shape.
    """
    x = x.reshape(x.shape[0], -1).double()
    y = y.reshape(y.shape[0], -1).double().to(x.device)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} dimensions per sample but y has {y.shape[1]}")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], num_projections, generator=g, dtype=torch.float64)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(x.device)
    px, _ = torch.sort(x @ theta, dim=0)
    py, _ = torch.sort(y @ theta, dim=0)
    if px.shape[0] != py.shape[0]:
        levels = (torch.arange(max(len(px), len(py)), dtype=torch.float64) + 0.5) / max(
            len(px), len(py)
        )
        px = torch.quantile(px, levels.to(x.device), dim=0)
        py = torch.quantile(py, levels.to(x.device), dim=0)
    return float((px - py).abs().pow(p).mean().pow(1 / p))
