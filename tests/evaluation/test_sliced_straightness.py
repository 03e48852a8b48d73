"""Sliced Wasserstein and straightness on cases with known answers."""

import pytest
import torch

from flowkit.evaluation import sliced_wasserstein, straightness


def test_sliced_wasserstein_of_a_shift() -> None:
    """Shifting by c along every axis: each projection is shifted by <theta, c>."""
    g = torch.Generator().manual_seed(0)
    # The value is exact for any sample size (each sorted projection shifts as a whole); the
    # tolerance is for the 4096 random directions, so few points suffice.
    x = torch.randn(256, 2, generator=g)
    assert sliced_wasserstein(x, x) == 0.0
    shift = torch.tensor([0.3, 0.0])
    # E_theta <theta, c>^2 = |c|^2 / d for theta uniform on the circle.
    expected = (0.3**2 / 2) ** 0.5
    assert sliced_wasserstein(x, x + shift, num_projections=4096) == pytest.approx(
        expected, rel=0.03
    )


def test_sliced_wasserstein_unequal_sizes_and_noise_floor() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3000, 2, generator=g), torch.randn(1000, 2, generator=g)
    far = torch.randn(1000, 2, generator=g) * 2
    assert sliced_wasserstein(a, b) < 0.1 < sliced_wasserstein(a, far)
    with pytest.raises(ValueError, match="dimensions"):
        sliced_wasserstein(a, torch.zeros(5, 3))


def test_straightness_of_straight_and_curved_flows() -> None:
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    constant = torch.tensor([1.0, -2.0])
    assert straightness(lambda x, t: constant.expand_as(x), x0, nfe=10) == pytest.approx(0.0)
    # v = (t - 1/2) w: Z1 - Z0 = 0, so S = int (t - 1/2)^2 |w|^2 dt = |w|^2 / 12.
    w = torch.tensor([3.0, 4.0])
    s = straightness(lambda x, t: (t[:, None] - 0.5) * w, x0, nfe=1000)
    assert s == pytest.approx(25 / 12, rel=1e-2)
    assert straightness(lambda x, t: (t[:, None] - 0.5) * w, x0, nfe=1000, reduction="mean") == (
        pytest.approx(25 / 24, rel=1e-2)
    )
