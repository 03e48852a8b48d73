"""Noise-level estimators recover the level of noised samples."""

from __future__ import annotations

import pytest
import torch

from flowkit.mcmc import (
    ClassifierEstimator,
    LangevinGibbs,
    NoiseLevelClassifier,
    ScoreNormEstimator,
    fit_noise_level_classifier,
    level_grid,
)
from flowkit.mcmc.estimators import nearest_level
from flowkit.paths import rectified

from .gaussians import gaussian


def _data(n: int, generator: torch.Generator) -> torch.Tensor:
    centers = torch.tensor([[-1.5, 0.0], [1.5, 0.0], [0.0, 1.5]])
    pick = torch.randint(0, 3, (n,), generator=generator)
    return centers[pick] + 0.2 * torch.randn(n, 2, generator=generator)


def _trained_classifier() -> NoiseLevelClassifier:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: one thread is ~3x faster than two
    try:
        torch.manual_seed(0)
        net = NoiseLevelClassifier((2,), num_levels=12, s_min=0.05, s_max=20.0, hidden=64,
                                   depth=2)  # fmt: skip
        data = _data(20000, torch.Generator().manual_seed(0))
        fit_noise_level_classifier(net, data, steps=300, batch_size=256, lr=1e-2)
    finally:
        torch.set_num_threads(threads)
    return net


@pytest.fixture(scope="module")
def classifier() -> NoiseLevelClassifier:
    return _trained_classifier()


def test_classifier_recovers_the_level(classifier) -> None:
    g = torch.Generator().manual_seed(1)
    k = torch.randint(0, 12, (2000,), generator=g)
    y = _data(2000, g) + classifier.levels.float()[k, None] * torch.randn(2000, 2, generator=g)
    chains = list(range(2000))
    found = ClassifierEstimator(classifier, "map")(y, chains, seed=0, step=0)
    # Two coordinates measure a level only roughly (|y|^2 / s^2 is about chi^2_2): adjacent
    # levels (x1.72 apart) overlap. Chance is 1/12 exact, 3/12 within one level.
    assert float((found == k).float().mean()) > 0.25
    assert float((found - k).abs().le(1).float().mean()) > 0.65
    assert float((found - k).abs().le(2).float().mean()) > 0.8  # chance: 5/12
    drawn = ClassifierEstimator(classifier, "posterior")(y, chains, seed=0, step=0)
    assert float((drawn - k).abs().le(2).float().mean()) > 0.7
    again = ClassifierEstimator(classifier, "posterior")(y[:7], chains[:7], seed=0, step=0)
    assert torch.equal(again, drawn[:7])  # per-chain seeded: independent of the batch


def test_classifier_checks_shape_and_grid(classifier) -> None:
    field = gaussian(rectified(), [0.0, 0.0, 0.0], 1.0)
    estimator = ClassifierEstimator(classifier)
    with pytest.raises(ValueError, match=r"shape \(2,\).*shape \(3,\)"):
        LangevinGibbs(field, (3,), levels=classifier.levels, estimator=estimator)
    with pytest.raises(ValueError, match="num_levels=12"):
        LangevinGibbs(gaussian(rectified(), [0.0, 0.0], 1.0), (2,),
                      levels=level_grid(1000, 0.05, 20.0), estimator=estimator)  # fmt: skip


def test_classifier_save_load_round_trip(classifier, tmp_path) -> None:
    classifier.save_pretrained(tmp_path / "estimator")
    assert (tmp_path / "estimator" / "diffusion_pytorch_model.safetensors").exists()
    loaded = NoiseLevelClassifier.from_pretrained(tmp_path / "estimator")
    y = torch.randn(5, 2)
    torch.testing.assert_close(loaded(y), classifier(y))
    assert loaded.sample_shape == (2,)


def test_score_norm_estimator_at_large_noise() -> None:
    path = rectified()
    field = gaussian(path, [0.3, -0.2], 1.0)
    levels = level_grid(200, 0.05, 50.0)
    chains = LangevinGibbs(field, (2,), levels=levels, num_chains=1, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    for s_true in (3.0, 10.0, 30.0):
        k = torch.full((4000,), int((levels - s_true).abs().argmin()))
        s = float(levels[k[0]])
        x1 = torch.tensor([[0.3, -0.2]]) + torch.randn(4000, 2, generator=g)  # data, c = 1
        y = (x1 + s * torch.randn(4000, 2, generator=g)).double()  # y ~ p_s
        estimate = ScoreNormEstimator(levels).estimate(levels[k], chains.score_y(y, k))
        # s^2 |score_y| / sqrt(d) = s^2 / sqrt(1 + s^2) * chi_2 / sqrt(2); chi_2's median
        # is sqrt(2 log 2): exact for this Gaussian, -> s * 0.8326 as s grows
        expected = s**2 / (1 + s**2) ** 0.5 * (2 * torch.log(torch.tensor(2.0))) ** 0.5 / 2**0.5
        assert float(estimate.median()) == pytest.approx(float(expected), rel=0.05)
        assert float(expected) == pytest.approx(s * 0.8326, rel=0.06)


@pytest.mark.parametrize("descending", [True, False])
def test_nearest_level_equals_brute_force(descending: bool) -> None:
    levels = level_grid(1000, 0.01, 50.0)
    levels = levels if descending else levels.flip(0)
    g = torch.Generator().manual_seed(0)
    s = torch.exp(torch.empty(20_000, dtype=torch.float64).uniform_(-8, 6, generator=g))
    s = torch.cat([s, levels, levels[:7] * (1 + 1e-9), torch.tensor([1e-12, 1e12])])
    brute = (s.log()[:, None] - levels.log()[None, :]).abs().argmin(dim=1)
    assert torch.equal(nearest_level(levels, s), brute)
    assert not torch.equal(nearest_level(levels.flip(0), s), brute)  # the grid's order counts


def test_a_level_grid_that_is_not_strictly_decreasing_is_refused() -> None:
    field = gaussian(rectified(), [0.0, 0.0], 1.0)
    levels = level_grid(50, 0.05, 20.0)
    LangevinGibbs(field, (2,), levels=levels, num_chains=2)  # the grid as made: accepted
    for bad in (levels.flip(0), torch.cat([levels[:10], levels[9:]])):
        with pytest.raises(ValueError, match="strictly decreasing"):
            LangevinGibbs(field, (2,), levels=bad, num_chains=2)
