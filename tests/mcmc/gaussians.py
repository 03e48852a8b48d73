"""Exact score fields of Gaussian and Gaussian-mixture data on any affine path (test helpers)."""

from __future__ import annotations

import torch
from torch import Tensor

from flowkit.paths import AffinePath


class MixtureScore:
    """``score(x_t, t)`` of ``x_t = alpha x1 + sigma x0`` for ``x1 ~ sum_i w_i N(mu_i, c^2 I)``;
    counts its calls."""

    prediction = "score"

    def __init__(self, path: AffinePath, means: Tensor, weights: Tensor, std: float) -> None:
        self.path, self.means, self.weights, self.std = path, means, weights, std
        self.calls = 0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        alpha, sigma, _, _ = self.path.coefficients(t.to(torch.float64))
        a = alpha.to(x.dtype)[:, None]
        var = (alpha**2 * self.std**2 + sigma**2).to(x.dtype)[:, None]  # (B, 1)
        centers = a[:, None, :] * self.means.to(x)[None]  # (B, M, D)
        diff = x[:, None, :] - centers
        logits = torch.log(self.weights.to(x))[None] - (diff**2).sum(-1) / (2 * var)
        resp = torch.softmax(logits, dim=1)  # (B, M)
        return -(resp[..., None] * diff).sum(1) / var


def gaussian(path: AffinePath, mean: list[float], std: float) -> MixtureScore:
    return MixtureScore(path, torch.tensor([mean], dtype=torch.float64), torch.ones(1), std)
