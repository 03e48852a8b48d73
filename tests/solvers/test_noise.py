"""Seeded noise: a pure, vectorised function of (seed, index, stream, position)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats

from flowkit.solvers import seeded_integers, seeded_noise
from flowkit.solvers.increments import PerSampleNoise
from flowkit.solvers.noise import sample_seed


def test_different_base_seeds_give_different_noise() -> None:
    """Regression: seed * 2**32 + i truncated to 32 bits made every seed give seed 0's noise."""
    base = seeded_noise((2,), [0, 1], 0)
    for seed in (1, 7, 2**32, 2**40 + 3, 2**63 + 5):
        assert not torch.allclose(seeded_noise((2,), [0, 1], seed), base), seed
    assert len({sample_seed(seed, 0) for seed in range(1000)}) == 1000
    assert len({sample_seed(0, seed) for seed in range(1000)}) == 1000


def test_equal_seeds_give_equal_noise_whatever_the_batch() -> None:
    full = seeded_noise((3, 4, 4), range(50), 11)
    assert torch.equal(full, seeded_noise((3, 4, 4), range(50), 11))
    for lo, hi in ((0, 1), (17, 18), (10, 37), (49, 50)):
        assert torch.equal(seeded_noise((3, 4, 4), range(lo, hi), 11), full[lo:hi])
    assert torch.equal(seeded_noise((3, 4, 4), [42, 3], 11), full[[42, 3]])


def test_equal_seeds_give_equal_noise_in_another_process() -> None:
    code = (
        "import hashlib; from flowkit.solvers import seeded_noise;"
        "print(hashlib.sha256(seeded_noise((5,), range(20, 30), 9).numpy().tobytes()).hexdigest())"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import hashlib

    here = hashlib.sha256(seeded_noise((5,), range(20, 30), 9).numpy().tobytes()).hexdigest()
    assert other.stdout.strip() == here


def test_noise_is_standard_normal_and_independent_across_samples() -> None:
    x = seeded_noise((1,), range(20000), 3).flatten().double().numpy()
    assert stats.kstest(x, "norm").pvalue > 1e-3
    rows = seeded_noise((64,), range(2000), 3).double()
    corr = torch.corrcoef(rows[:, :8].T)  # coordinates of a sample are independent
    assert (corr - torch.eye(8)).abs().max() < 0.1
    # neighbouring indices and neighbouring seeds are uncorrelated
    a, b = seeded_noise((4000,), [0, 1], 0)
    c = seeded_noise((4000,), [0], 1)[0]
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.06
    assert abs(float(torch.corrcoef(torch.stack([a, c]))[0, 1])) < 0.06


def test_float32_noise_is_float64_noise_rounded() -> None:
    single = seeded_noise((7,), range(5), 2)
    double = seeded_noise((7,), range(5), 2, dtype=torch.float64)
    assert single.dtype == torch.float32 and double.dtype == torch.float64
    assert torch.equal(single, double.float())


@pytest.mark.parametrize("shape", [(), (1,), (3,), (2, 3)])
def test_odd_and_scalar_shapes(shape: tuple[int, ...]) -> None:
    x = seeded_noise(shape, range(4), 0)
    assert x.shape == (4, *shape)
    assert torch.equal(seeded_noise(shape, [2], 0)[0], x[2])


def test_a_bad_seed_is_named() -> None:
    with pytest.raises(ValueError, match="seed must be an integer, got 1.5"):
        seeded_noise((2,), [0], 1.5)  # type: ignore[arg-type]


def test_increments_are_per_sample_per_step_and_not_the_initial_noise() -> None:
    big = PerSampleNoise((3,), range(8), seed=5, dtype=torch.float64)
    small = PerSampleNoise((3,), [6], seed=5, dtype=torch.float64)
    steps = [big.next() for _ in range(5)]
    for step in steps:
        assert torch.equal(step[6], small.next()[0])
    assert not torch.allclose(steps[0], steps[1])
    x0 = seeded_noise((3,), range(8), 5, dtype=torch.float64)
    assert not torch.allclose(steps[0], x0)
    other_seed = PerSampleNoise((3,), range(8), seed=6, dtype=torch.float64).next()
    assert not torch.allclose(other_seed, steps[0])


def test_labels_are_uniform_per_sample_and_seeded() -> None:
    labels = seeded_integers(10, range(5000), 0)
    assert labels.dtype == torch.int64 and labels.min() == 0 and labels.max() == 9
    counts = np.bincount(labels.numpy(), minlength=10)
    assert stats.chisquare(counts).pvalue > 1e-3
    assert torch.equal(seeded_integers(10, range(100, 120), 0), labels[100:120])
    assert not torch.equal(seeded_integers(10, range(100), 1), labels[:100])
    with pytest.raises(ValueError, match="high must be >= 1"):
        seeded_integers(0, [0])
