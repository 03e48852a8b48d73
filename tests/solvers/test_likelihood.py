"""Likelihood through the probability-flow ODE against analytic Gaussian log-densities."""

import math

import pytest
import torch

from flowkit.paths import get_path
from flowkit.solvers.likelihood import log_likelihood

MEAN = torch.tensor([0.5, -1.0], dtype=torch.float64)
STD = torch.tensor([0.3, 1.5], dtype=torch.float64)


def exact_velocity(path):
    """Rectified-flow velocity for data N(MEAN, diag STD^2) (coordinate-wise Gaussian flow)."""

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s, da, ds = (c.to(x.dtype)[:, None] for c in path.coefficients(t.double()))
        var = a**2 * STD**2 + s**2
        d_var = 2 * a * da * STD**2 + 2 * s * ds
        return da * MEAN + d_var / (2 * var) * (x - a * MEAN)

    return field


def gaussian_log_density(x: torch.Tensor) -> torch.Tensor:
    z = (x - MEAN) / STD
    return (-0.5 * z**2 - torch.log(STD) - 0.5 * math.log(2 * math.pi)).sum(1)


@pytest.mark.parametrize("path_name", ["rectified", "cosine"])
def test_exact_divergence_matches_the_analytic_log_density(path_name: str) -> None:
    path = get_path(path_name)
    x = MEAN + STD * torch.randn(
        16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    result = log_likelihood(exact_velocity(path), x, path=path, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(result.log_prob, gaussian_log_density(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(result.bits_per_dim, -result.log_prob / (2 * math.log(2)))
    assert result.nfe > 0


def test_hutchinson_estimate_is_unbiased() -> None:
    path = get_path("rectified")
    x = (
        MEAN
        + STD * torch.randn(1, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ).repeat(400, 1)
    estimates = torch.stack(
        [
            log_likelihood(
                exact_velocity(path), x, exact=False, seed=seed, rtol=1e-5, atol=1e-5
            ).log_prob.mean()
            for seed in range(3)
        ]
    )
    assert estimates.mean().item() == pytest.approx(gaussian_log_density(x[:1]).item(), abs=0.05)
