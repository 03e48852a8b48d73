import pytest
import torch

from flowkit.data import TOY_NAMES, sample_toy


@pytest.mark.parametrize("name", TOY_NAMES)
def test_shape_dtype_range(name):
    x = sample_toy(name, 4000, seed=0)
    assert x.shape == (4000, 2)
    assert x.dtype == torch.float32
    assert x.abs().max() <= 1.25
    # The points use the square, not a corner of it.
    assert x.abs().max() >= 0.5


@pytest.mark.parametrize("name", TOY_NAMES)
def test_deterministic_per_seed(name):
    assert torch.equal(sample_toy(name, 500, seed=3), sample_toy(name, 500, seed=3))
    assert not torch.equal(sample_toy(name, 500, seed=3), sample_toy(name, 500, seed=4))


def test_checkerboard_fills_alternate_cells_evenly():
    x = sample_toy("checkerboard", 40_000, seed=1)
    assert x.min() >= -1 and x.max() <= 1
    cell = ((x + 1) / 0.5).floor().long().clamp(0, 3)
    col, row = cell[:, 0], cell[:, 1]
    filled = (col + row) % 2 == 0
    assert filled.float().mean() > 0.999
    counts = torch.bincount((col * 4 + row)[filled], minlength=16)[
        [i * 4 + j for i in range(4) for j in range(4) if (i + j) % 2 == 0]
    ]
    assert counts.min() > 0.9 * 40_000 / 8


def test_eight_gaussians_modes():
    x = sample_toy("8gaussians", 8000, seed=0)
    radius = x.norm(dim=1)
    assert (radius - 0.8).abs().mean() < 0.06
    sector = torch.round(torch.atan2(x[:, 1], x[:, 0]) / (2 * torch.pi / 8)).long() % 8
    assert torch.bincount(sector, minlength=8).min() > 800


def test_moons_lie_on_two_balanced_arcs():
    x = sample_toy("moons", 8000, seed=0)
    # Arcs of radius 0.6 around (-0.3, -0.15) (upper moon) and (0.3, 0.15) (lower moon).
    off_upper = ((x - torch.tensor([-0.3, -0.15])).norm(dim=1) - 0.6).abs()
    off_lower = ((x - torch.tensor([0.3, 0.15])).norm(dim=1) - 0.6).abs()
    upper = (off_upper < off_lower) & (x[:, 1] > -0.15)
    assert torch.minimum(off_upper, off_lower).quantile(0.99) < 0.1
    assert 0.45 < upper.float().mean() < 0.55


def test_spirals_follow_two_opposite_arms():
    x = sample_toy("spirals", 20_000, seed=0)
    radius = x.norm(dim=1)
    assert radius.max() < 1.0 and radius.quantile(0.99) > 0.8
    # Arm angle 3 pi r / 0.9, the second arm turned by pi: the residual modulo pi is small.
    far = radius > 0.3
    angle = torch.atan2(x[far, 1], x[far, 0])
    residual = torch.remainder(angle - 3 * torch.pi * radius[far] / 0.9 + torch.pi / 2, torch.pi)
    assert (residual - torch.pi / 2).abs().quantile(0.95) < 0.5
    # Both arms are used equally.
    assert x.mean(dim=0).abs().max() < 0.03


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="checkerboard") as info:
        sample_toy("swissroll", 10)
    assert "swissroll" in str(info.value)
