"""The fast paths of the samplers' fixed cost and of the seeded noise give the same values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowkit.solvers import sample_ode
from flowkit.solvers.field import VelocityField, _attribute
from flowkit.solvers.grids import time_grid, uniform_grid
from flowkit.solvers.noise import _mix, sample_keys, standard_normal


def _reference_normals(keys: np.ndarray, start: int, count: int) -> np.ndarray:
    """The module docstring's construction, written out plainly (strided, unchunked)."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        positions = np.arange(start + 1, start + count + 1, dtype=np.uint64)
        words = _mix(keys[:, None] + positions[None, :] * golden)
    bits = (words >> np.uint64(11)).astype(np.float64)
    radius = np.sqrt(-2.0 * np.log((bits[:, 0::2] + 1.0) * 2.0**-53))
    angle = bits[:, 1::2] * (2.0 * np.pi * 2.0**-53)
    out = np.empty((len(keys), count))
    out[:, 0::2] = np.cos(angle) * radius
    out[:, 1::2] = np.sin(angle) * radius
    return out


@pytest.mark.parametrize(
    ("batch", "start", "count"),
    [(1, 0, 2), (5, 6, 4), (3000, 10, 64), (2, 0, 70000), (0, 0, 4), (4, 0, 0), (2049, 2, 34)],
)
def test_standard_normal_matches_the_plain_construction_bitwise(batch, start, count) -> None:
    keys = sample_keys(7, range(batch), 1)
    got = standard_normal(keys, start, count)
    assert got.shape == (batch, count)
    assert got.tobytes() == _reference_normals(keys, start, count).tobytes()
    single = standard_normal(keys, start, count, np.float32)
    assert single.tobytes() == got.astype(np.float32).tobytes()


@pytest.mark.parametrize(("steps", "t0", "t1"), [(1, 0.0, 1.0), (7, 0.001, 0.999), (3, -1.0, -0.0)])
def test_uniform_grid_cached_equals_fresh_and_is_not_shared(steps, t0, t1) -> None:
    fresh = [t0 + (t1 - t0) * k / steps for k in range(steps)] + [t1]
    for _ in range(2):
        times, points = uniform_grid(steps, t0, t1)
        assert points == fresh and times.tolist() == fresh
        assert torch.equal(times, time_grid("uniform", steps, t0, t1))
        assert str(points[-1]) == str(t1)  # -0.0 stays -0.0
        times[0] = 123.0  # a caller's edit does not reach the cache
    assert uniform_grid(steps, t0, t1)[0][0].item() == t0


def test_first_velocity_call_checks_the_shape() -> None:
    with pytest.raises(ValueError, match="must return the shape of x"):
        sample_ode(lambda x, t: x[:, :1], torch.zeros(3, 2), nfe=2)
    v = VelocityField(lambda x, t: -x)
    assert torch.equal(v(torch.ones(2, 2), 0.0), -torch.ones(2, 2)) and v.calls == 1


def test_attribute_matches_getattr_on_modules_and_functions() -> None:
    module = torch.nn.Linear(2, 2)
    module.prediction = "data"
    for obj in (module, torch.nn.Identity(), lambda x, t: x):
        for name in ("prediction", "config", "weight", "missing", "__class__"):
            assert _attribute(obj, name, "d") is getattr(obj, name, "d")
