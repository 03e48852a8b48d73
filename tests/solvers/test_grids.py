"""Time grids: exact endpoints, monotone, the formulas they claim."""

import math

import pytest
import torch

from flowkit.paths import rectified, ve, vp
from flowkit.solvers import time_grid
from flowkit.solvers.grids import GRIDS


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("steps", [1, 2, 7, 50])
def test_grids_end_exactly_at_the_endpoints(grid: str, steps: int) -> None:
    for t0, t1 in ((0.0, 1.0), (1e-3, 1 - 1e-3)):
        times = time_grid(grid, steps, t0, t1)
        assert times.shape == (steps + 1,)
        assert times[0].item() == t0 and times[-1].item() == t1
        assert bool((times[1:] > times[:-1]).all())


def test_edm_grid_follows_karras_noise_levels_on_the_rectified_path() -> None:
    steps, rho, smin, smax = 10, 7.0, 0.002, 80.0
    times = time_grid("edm", steps, path=rectified())
    i = torch.arange(steps, dtype=torch.float64)
    sigmas = (smax ** (1 / rho) + i / (steps - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    # Rectified: EDM noise level (1 - t) / t, so t = 1 / (1 + sigma); first and last replaced.
    torch.testing.assert_close(times[1:-1], 1 / (1 + sigmas[1:]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("path", [vp(), ve()], ids=["vp", "ve"])
def test_edm_grid_on_paths_that_stop_short_of_zero_noise(path) -> None:
    """VP and VE end at a positive noise level: the grid is Karras-spaced down to it."""
    times = time_grid("edm", 8, 0.0, path.t_max, path=path, sigma_max=20.0)
    alpha, sigma, _, _ = path.coefficients(times[1:])
    roots = (sigma / alpha) ** (1 / 7)
    gaps = roots[:-1] - roots[1:]
    torch.testing.assert_close(gaps, gaps.mean().expand_as(gaps), rtol=1e-6, atol=1e-9)
    assert times[-1].item() == path.t_max


def test_shifted_grid_matches_sd3() -> None:
    times = time_grid("shifted", 4, shift=3.0)
    s = 1 - torch.linspace(0, 1, 5, dtype=torch.float64)
    torch.testing.assert_close(times, 1 - 3 * s / (1 + 2 * s))
    assert (time_grid("shifted", 4, shift=1.0) == time_grid("uniform", 4)).all()


def test_cosine_grid() -> None:
    times = time_grid("cosine", 4)
    expected = [(1 - math.cos(math.pi * k / 4)) / 2 for k in range(5)]
    torch.testing.assert_close(times, torch.tensor(expected, dtype=torch.float64))


def test_bad_grids_are_named() -> None:
    with pytest.raises(ValueError, match="unknown grid 'karras'"):
        time_grid("karras", 4)
    with pytest.raises(ValueError, match="takes options"):
        time_grid("uniform", 4, rho=7)
    with pytest.raises(ValueError, match="increasing"):
        time_grid([0.0, 0.5, 0.4], 0)
