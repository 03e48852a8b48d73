import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from flowkit.objectives.time_samplers import KINDS, TimeSampler

N = 20_000
SAMPLERS = [
    TimeSampler("uniform"),
    TimeSampler("uniform", eps=0.2),
    TimeSampler("logit_normal"),
    TimeSampler("logit_normal", mean=0.5, std=0.7),
    TimeSampler("u_shaped"),
    TimeSampler("u_shaped", a=10.0, clip=0.0),
    TimeSampler("lognormal"),
]


def draw(sampler: TimeSampler, n: int = N, seed: int = 0) -> torch.Tensor:
    return sampler.sample(n, generator=torch.Generator().manual_seed(seed))


def as_numpy_fn(fn):
    return lambda x: fn(torch.as_tensor(np.asarray(x), dtype=torch.float64)).numpy()


def jump_points(sampler: TimeSampler) -> list[float]:
    """Where the density jumps inside (0, 1): the ends of a truncated support."""
    eps, clip = sampler.params.get("eps", 0.0), sampler.params.get("clip", 0.0)
    return [p for p in (eps, clip, 1 - clip) if 0 < p < 1]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_samples_shape_dtype_and_support(sampler):
    t = draw(sampler, 1000)
    assert t.shape == (1000,) and t.dtype == torch.float32
    assert bool(((t > 0) & (t <= 1)).all())
    assert sampler.sample(0).shape == (0,)


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_kolmogorov_smirnov_against_exact_cdf(sampler):
    result = stats.kstest(draw(sampler).double().numpy(), as_numpy_fn(sampler.cdf))
    assert result.pvalue > 0.01


def test_kolmogorov_smirnov_detects_a_wrong_law():
    # The check above has power: u-shaped samples against the uniform CDF are rejected,
    # and so are logit-normal samples against EDM's (shifted) logit-normal.
    u_shaped = draw(TimeSampler("u_shaped")).double().numpy()
    assert stats.kstest(u_shaped, as_numpy_fn(TimeSampler("uniform").cdf)).pvalue < 1e-6
    logit_normal = draw(TimeSampler("logit_normal")).double().numpy()
    assert stats.kstest(logit_normal, as_numpy_fn(TimeSampler("lognormal").cdf)).pvalue < 1e-6


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_histogram_matches_density(sampler):
    # Bin probabilities from quadrature of the density (independent of cdf and sample),
    # against the empirical frequencies, within 5 binomial standard errors.
    edges = np.linspace(0, 1, 21)
    counts, _ = np.histogram(draw(sampler, seed=1).double().numpy(), bins=edges)
    pdf = as_numpy_fn(sampler.density)
    for lo, hi, count in zip(edges[:-1], edges[1:], counts, strict=True):
        breaks = [p for p in jump_points(sampler) if lo < p < hi]
        prob, _ = integrate.quad(lambda x: float(pdf(x)), lo, hi, points=breaks or None)
        stderr = math.sqrt(max(prob * (1 - prob), 1e-12) / N)
        assert abs(count / N - prob) < 5 * stderr + 1e-4, (lo, hi, count / N, prob)


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_density_integrates_to_one_and_to_the_cdf(sampler):
    pdf = as_numpy_fn(sampler.density)
    jumps = jump_points(sampler)
    total, _ = integrate.quad(lambda x: float(pdf(x)), 0, 1, points=jumps or None, limit=200)
    assert total == pytest.approx(1.0, abs=1e-6)
    for x in (0.1, 0.37, 0.8):
        inside = [p for p in jumps if p < x] or None
        partial, _ = integrate.quad(lambda y: float(pdf(y)), 0, x, points=inside, limit=200)
        cdf = sampler.cdf(torch.tensor(x, dtype=torch.float64))
        assert float(cdf) == pytest.approx(partial, abs=1e-6)


def test_u_shaped_density_values():
    exact = TimeSampler("u_shaped", clip=0.0)
    values = exact.density(torch.tensor([0.0, 0.5, 1.0]))
    assert values.tolist() == pytest.approx([2.0746, 0.5514, 2.0746], abs=1e-4)
    # closed form: a (e^{a u} + e^{a (1 - u)}) / (2 (e^a - 1)) at u = 0.3
    a, u = 4.0, 0.3
    closed = a * (math.exp(a * u) + math.exp(a * (1 - u))) / (2 * (math.exp(a) - 1))
    value = exact.density(torch.tensor(u, dtype=torch.float64))
    assert float(value) == pytest.approx(closed, rel=1e-12)
    # the default rescale into [1e-5, 1 - 1e-5] changes the values only slightly
    edges = torch.tensor([1e-5, 0.5, 1 - 1e-5], dtype=torch.float64)
    rescaled = TimeSampler("u_shaped").density(edges)
    assert rescaled.tolist() == pytest.approx([2.0746, 0.5514, 2.0746], abs=1e-3)
    assert TimeSampler("u_shaped").density(torch.tensor([0.0, 1.0])).tolist() == [0.0, 0.0]


def test_u_shaped_samples_are_rescaled_into_clip_range():
    t = draw(TimeSampler("u_shaped", clip=0.01))
    assert float(t.min()) >= 0.01 - 1e-7 and float(t.max()) <= 0.99 + 1e-7
    assert float(t.min()) < 0.011 and float(t.max()) > 0.989


def test_u_shaped_large_a_does_not_overflow():
    t = draw(TimeSampler("u_shaped", a=500.0, clip=0.0), 1000)
    assert bool(torch.isfinite(t).all())
    assert float(torch.minimum(t, 1 - t).max()) < 0.05  # mass piles up at both ends


def test_uniform_support_and_density():
    sampler = TimeSampler("uniform")
    t = draw(sampler)
    assert float(t.min()) >= 1e-3
    density = sampler.density(torch.tensor([5e-4, 0.5, 1.0]))
    assert density.tolist() == pytest.approx([0.0, 1 / (1 - 1e-3), 1 / (1 - 1e-3)])


def test_lognormal_matches_edm_noise_levels():
    # sigma = (1 - t) / t must be log-normal with EDM's P_mean = -1.2, P_std = 1.2.
    t = draw(TimeSampler("lognormal")).double()
    log_sigma = torch.log((1 - t) / t).numpy()
    assert stats.kstest(log_sigma, stats.norm(loc=-1.2, scale=1.2).cdf).pvalue > 0.01
    assert stats.kstest(log_sigma, stats.norm(loc=1.2, scale=1.2).cdf).pvalue < 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_generator_is_deterministic_and_the_only_rng_used(kind):
    sampler = TimeSampler(kind, **({"k": 8} if kind == "k_step" else {}))
    torch.manual_seed(123)
    global_state = torch.random.get_rng_state()
    first, again, other = draw(sampler, 64, seed=7), draw(sampler, 64, seed=7), draw(sampler, 64, 8)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.equal(torch.random.get_rng_state(), global_state)
    assert sampler.sample(4, device="cpu").device.type == "cpu"


def test_repr_and_attributes():
    sampler = TimeSampler("u_shaped", a=3)
    assert sampler.kind == "u_shaped"
    assert sampler.params == {"a": 3.0, "clip": 1e-5}
    assert repr(sampler) == "TimeSampler('u_shaped', a=3.0, clip=1e-05)"


@pytest.mark.parametrize(
    ("kind", "kw", "match"),
    [
        ("beta", {}, "unknown time sampler kind 'beta'"),
        ("uniform", {"eps": 1.0}, r"eps=1.0 must lie in \[0, 1\)"),
        ("uniform", {"eps": -0.1}, r"eps=-0.1 must lie in \[0, 1\)"),
        ("u_shaped", {"a": 0.0}, "a=0.0 must be > 0"),
        ("u_shaped", {"clip": 0.5}, r"clip=0.5 must lie in \[0, 0.5\)"),
        ("logit_normal", {"std": 0.0}, "std=0.0 must be > 0"),
        ("lognormal", {"std": -1.0}, "std=-1.0 must be > 0"),
        ("lognormal", {"mean": math.inf}, "mean=inf must be finite"),
        ("logit_normal", {"a": 4.0}, r"unknown parameter\(s\) \['a'\]"),
        ("k_step", {"k": 0}, "k=0.0 must be an integer >= 1"),
        ("k_step", {"k": 2.5}, "k=2.5 must be an integer >= 1"),
    ],
)
def test_errors(kind, kw, match):
    with pytest.raises(ValueError, match=match):
        TimeSampler(kind, **kw)


def test_k_step_draws_the_grid_of_a_k_step_sampler_uniformly():
    sampler = TimeSampler("k_step", k=4)
    t = draw(sampler, 40_000)
    values, counts = t.unique(return_counts=True)
    assert values.tolist() == [0.0, 0.25, 0.5, 0.75]
    assert stats.chisquare(counts.numpy()).pvalue > 0.01
    grid = torch.tensor([-0.1, 0.0, 0.3, 0.75, 1.0])
    assert sampler.cdf(grid).tolist() == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert draw(TimeSampler("k_step"), 100).eq(0).all()  # k = 1: the one-step map at t = 0
    with pytest.raises(ValueError, match="discrete"):
        sampler.density(grid)


def test_negative_n_is_an_error():
    with pytest.raises(ValueError, match="n=-1 must be >= 0"):
        TimeSampler("uniform").sample(-1)
