"""The GBM samplers with the analytic multiplicative score of a log-normal target: positive
samples with the target's mean and variance, counted NFE, per-sample noise, option checks."""

import pytest
import torch

from flowkit.paths import GBMProcess, LogNormal
from flowkit.solvers import sample_gbm, sample_gbm_seeded
from flowkit.solvers.gbm import gbm_noise_factors

PROCESS = GBMProcess(sigma=0.8)  # mu = sigma^2 / 2
LOG_MEAN = torch.tensor([0.0, 0.3, 0.6, 0.2])  # four coordinates, one target each
LOG_STD = torch.tensor([0.2, 0.3, 0.15, 0.4])


def exact_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x ∘ ∇ log p_s for log-normal data pushed through the GBM: log X_s ~ N(m_s, v_s) with
    m_s = m + (mu - sigma^2/2) s, v_s = v + sigma^2 s, so h = -1 - (log x - m_s) / v_s."""
    s = (1 - t)[:, None]
    m_s = LOG_MEAN + PROCESS.log_drift * s
    v_s = LOG_STD**2 + PROCESS.sigma**2 * s
    return -1 - (x.log() - m_s) / v_s


def start(num: int, seed: int = 0) -> torch.Tensor:
    law = PROCESS.marginal(LogNormal(LOG_MEAN, LOG_STD), 1.0)
    return law.sample(torch.randn(num, 4, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("sampler", ["multiplicative", "additive"])
def test_samplers_reach_the_log_normal_target(sampler: str) -> None:
    result = sample_gbm(exact_score, start(3000), steps=400, process=PROCESS, sampler=sampler)
    x = result.x
    assert bool((x > 0).all()) and result.nfe == 400
    mean = torch.exp(LOG_MEAN + LOG_STD**2 / 2)
    var = (torch.exp(LOG_STD**2) - 1) * torch.exp(2 * LOG_MEAN + LOG_STD**2)
    # Monte Carlo error of 3000 samples: about 1% on the mean, 3-5% on the variance
    torch.testing.assert_close(x.mean(0), mean, rtol=0.02, atol=0)
    torch.testing.assert_close(x.var(0), var, rtol=0.12, atol=0)
    # the start is far from the target: sampling did the work
    assert float((start(3000).var(0) / var).min()) > 4


def test_without_the_score_the_target_is_missed() -> None:
    """The same check fails for a wrong score (h = -1: no denoising), so it can fail."""
    x = sample_gbm(lambda x, t: -torch.ones_like(x), start(3000), steps=100).x
    var = (torch.exp(LOG_STD**2) - 1) * torch.exp(2 * LOG_MEAN + LOG_STD**2)
    assert float((x.var(0) / var).min()) > 2


def test_inner_iterations_are_counted_and_track_the_target() -> None:
    """L = 2 iterations per level at a = sqrt(2): with mu = sigma^2 / 2 each is a Langevin step
    on p_{s_k} in log x. The chain lags behind the shrinking noise, so it ends a little wider
    than the target (about 1.2x in std at 200 levels), centred on it."""
    result = sample_gbm(
        exact_score, start(2000), steps=200, process=PROCESS, inner_steps=2, noise_scale=2**0.5
    )
    assert result.nfe == 400 and bool((result.x > 0).all())
    torch.testing.assert_close(result.x.log().mean(0), LOG_MEAN, atol=0.03, rtol=0)
    ratio = result.x.log().std(0) / LOG_STD
    assert bool(((ratio > 1.0) & (ratio < 1.3)).all()), ratio


def test_annealing_the_noise_narrows_the_samples() -> None:
    """a_k = s_k (anneal = 1) removes noise toward the data: centred, but much narrower."""
    x = sample_gbm(exact_score, start(2000), steps=200, process=PROCESS, anneal=1.0).x
    torch.testing.assert_close(x.log().mean(0), LOG_MEAN, atol=0.03, rtol=0)
    assert bool((x.log().std(0) / LOG_STD < 0.7).all())


def test_noise_factors_anneal_and_end_clean() -> None:
    assert gbm_noise_factors(4) == [1.0, 1.0, 1.0, 1.0]
    assert gbm_noise_factors(4, noise_scale=2.0, anneal=1.0, clean_steps=1) == [2.0, 1.5, 1.0, 0.0]
    assert gbm_noise_factors(3, clean_steps=3) == [0.0, 0.0, 0.0]


def test_noise_free_sampling_is_deterministic_and_trajectory_has_every_level() -> None:
    x = start(5)
    one = sample_gbm(exact_score, x, steps=10, noise_scale=0.0, return_trajectory=True)
    two = sample_gbm(exact_score, x, steps=10, clean_steps=10, seed=7)
    torch.testing.assert_close(one.x, two.x, rtol=0, atol=0)
    assert one.trajectory.shape == (11, 5, 4) and one.times.tolist()[-1] == 1.0
    torch.testing.assert_close(one.trajectory[0], x)


def test_sample_i_depends_on_seed_and_index_only() -> None:
    law = LogNormal(LOG_MEAN, LOG_STD)
    batch = sample_gbm_seeded(exact_score, law, (4,), range(6), seed=3, steps=20)
    single = sample_gbm_seeded(exact_score, law, (4,), [4], seed=3, steps=20)
    torch.testing.assert_close(batch.x[4:5], single.x, rtol=0, atol=0)
    other = sample_gbm_seeded(exact_score, law, (4,), [4], seed=4, steps=20)
    assert not torch.equal(other.x, single.x)


def test_additive_bracket_is_clamped_positive() -> None:
    """A wildly negative score would flip signs in the additive update without the clamp."""
    x = sample_gbm(lambda x, t: torch.full_like(x, -1e5), start(8), steps=10, sampler="additive")
    assert bool((x.x > 0).all())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sampler": "langevin"}, "unknown GBM sampler 'langevin'"),
        ({"steps": 0}, "steps must be an int >= 1, got 0"),
        ({"inner_steps": 1.5}, "inner_steps must be an int >= 1, got 1.5"),
        ({"clean_steps": 11}, "clean_steps=11 exceeds steps=10"),
        ({"noise_scale": -1.0}, "noise_scale must be a finite number >= 0.0, got -1.0"),
        ({"anneal": float("inf")}, "anneal must be a finite number >= 0.0, got inf"),
        ({"min_factor": 0.0}, "min_factor must be a finite number > 0.0, got 0.0"),
    ],
)
def test_bad_options_raise_and_name_the_value(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_gbm(exact_score, start(2), **{"steps": 10, **options})


def test_start_must_be_positive_and_indices_match() -> None:
    with pytest.raises(ValueError, match="positive start"):
        sample_gbm(exact_score, -start(2), steps=2)
    with pytest.raises(ValueError, match="indices has 3 entries for a batch of 2"):
        sample_gbm(exact_score, start(2), steps=2, indices=[0, 1, 2])
