"""Affine paths: endpoints, velocities against finite differences, schedule formulas."""

import math

import pytest
import torch

from flowkit.paths import PATHS, get_path, rectified, subvp, ve, vp

ALL_PATHS = sorted(PATHS)


@pytest.mark.parametrize("name", ALL_PATHS)
def test_velocity_matches_finite_difference(name: str) -> None:
    path = get_path(name)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 3, dtype=torch.float64, generator=g)
    x1 = torch.randn(64, 3, dtype=torch.float64, generator=g)
    t = torch.rand(64, dtype=torch.float64, generator=g) * 0.9 + 0.05
    h = 1e-6
    fd = (path.sample(x0, x1, t + h).xt - path.sample(x0, x1, t - h).xt) / (2 * h)
    torch.testing.assert_close(path.sample(x0, x1, t).dxt, fd, rtol=1e-6, atol=1e-6)


def test_rectified_is_the_straight_line() -> None:
    x0, x1 = torch.randn(8, 2), torch.randn(8, 2)
    s = rectified().sample(x0, x1, torch.full((8,), 0.25))
    torch.testing.assert_close(s.xt, 0.25 * x1 + 0.75 * x0)
    torch.testing.assert_close(s.dxt, x1 - x0)


def test_vp_matches_song_et_al() -> None:
    t = torch.tensor([0.3], dtype=torch.float64)
    s = 1 - 0.3
    m = math.exp(-(s**2) * (20 - 0.1) / 4 - s * 0.1 / 2)
    alpha, sigma, _, _ = vp().coefficients(t)
    assert alpha.item() == pytest.approx(m)
    assert sigma.item() == pytest.approx(math.sqrt(1 - m**2))
    _, sigma_sub, _, _ = subvp().coefficients(t)
    assert sigma_sub.item() == pytest.approx(1 - m**2)


def test_ve_prior_and_endpoint() -> None:
    path = ve(sigma_min=0.01, sigma_max=50.0)
    assert path.prior_std == pytest.approx(50.0)
    _, sigma, _, _ = path.coefficients(torch.ones(1, dtype=torch.float64))
    assert sigma.item() == pytest.approx(0.01)


@pytest.mark.parametrize("name", ALL_PATHS)
def test_endpoints_are_noise_and_data(name: str) -> None:
    path = get_path(name)
    alpha, sigma, _, _ = path.coefficients(torch.tensor([1.0], dtype=torch.float64))
    assert alpha.item() == pytest.approx(1.0)
    assert sigma.item() < 0.011  # VE keeps sigma_min = 0.01 at the data end
    alpha0, _, _, _ = path.coefficients(torch.tensor([0.0], dtype=torch.float64))
    assert alpha0.item() < 0.01 or name == "ve"


def test_bad_shapes_and_names_are_named() -> None:
    with pytest.raises(ValueError, match="unknown path 'vpp'"):
        get_path("vpp")
    with pytest.raises(ValueError, match="t must have shape"):
        rectified().sample(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(3))
