"""The s <-> t map of every affine path round-trips."""

from __future__ import annotations

import pytest
import torch

from flowkit.mcmc import level_grid, level_of_time, time_of_level
from flowkit.paths import cosine, discrete_vp, rectified, subvp, ve, vp

PATHS = [rectified(), vp(), subvp(), ve(), cosine(), vp(0.5, 0.5), subvp(1.0, 5.0),
         discrete_vp(torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0))]  # fmt: skip


@pytest.mark.parametrize("path", PATHS, ids=lambda p: repr(p))
def test_time_level_round_trip(path) -> None:
    t = torch.linspace(0.02, path.t_max - 1e-3, 200, dtype=torch.float64)
    s = level_of_time(path, t)
    assert bool((s[1:] < s[:-1]).all()), "s(t) must decrease"
    back = time_of_level(path, s)
    exact = path.name != "discrete_vp"  # DDPM tables snap t to knots within 1e-7
    torch.testing.assert_close(level_of_time(path, back), s, rtol=1e-9 if exact else 1e-5, atol=0)
    torch.testing.assert_close(back, t, rtol=0, atol=1e-12 if exact else 1e-6)


def test_levels_clamp_to_the_path_range() -> None:
    path = ve(0.01, 50.0)
    t = time_of_level(path, torch.tensor([1e-4, 1e4, 0.0], dtype=torch.float64))
    assert t.tolist() == [path.t_max, 0.0, path.t_max]
    with pytest.raises(ValueError, match=">= 0"):
        time_of_level(path, torch.tensor([-1.0]))


def test_level_grid_is_the_authors() -> None:
    grid = level_grid(1000, 0.01, 50.0)
    tau = torch.linspace(1.0, 1e-3, 1000, dtype=torch.float64)
    torch.testing.assert_close(grid, 0.01 * 5000**tau)
    assert float(grid[0]) == pytest.approx(50.0) and bool((grid[1:] < grid[:-1]).all())
