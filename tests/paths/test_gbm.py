"""The GBM forward process: log-normal marginals, the conditional multiplicative score, the
time convention, the [1, 2] shift and the fitted log-normal."""

import math

import pytest
import torch
from scipy import stats

from flowkit.paths import (
    GBMProcess,
    LogNormal,
    fit_lognormal,
    from_positive,
    to_positive,
)


@pytest.mark.parametrize("mu", [None, 0.0, 1.0])
@pytest.mark.parametrize("s", [0.01, 0.3, 1.0])
def test_forward_marginal_is_log_normal(mu: float | None, s: float) -> None:
    """Kolmogorov-Smirnov: log X_s ~ N(log x1 + (mu - sigma^2/2) s, sigma^2 s) at several s."""
    process = GBMProcess(sigma=0.8, mu=mu)
    x1 = torch.tensor([1.0, 1.5, 2.0]).repeat(4000, 1)  # (4000, 3): three data values
    t = torch.full((4000,), 1.0 - s)
    xt = process.sample(x1, t, generator=torch.Generator().manual_seed(0)).xt
    mean = x1.log() + (process.mu - 0.32) * s
    z = ((xt.log() - mean) / (0.8 * math.sqrt(s))).flatten().double().numpy()
    assert stats.kstest(z, "norm").pvalue > 0.01
    # the test has power: a variance 10% too large, or a drift of 0.1 std, is rejected
    assert stats.kstest(z / math.sqrt(1.1), "norm").pvalue < 1e-3
    assert stats.kstest(z - 0.1, "norm").pvalue < 1e-3


def test_time_convention_t1_is_data_and_t0_is_noise() -> None:
    process = GBMProcess()
    x1 = torch.rand(8, 1, 4, 4) + 1
    generator = torch.Generator().manual_seed(1)
    at_data = process.sample(x1, torch.ones(8), generator=generator)
    assert torch.equal(at_data.xt, x1) and torch.equal(at_data.s, torch.zeros(8))
    at_noise = process.sample(x1, torch.zeros(8), generator=generator)
    assert torch.equal(at_noise.s, torch.ones(8))
    spread = (at_noise.xt / x1).log().std()
    assert 0.6 < float(spread) < 1.0  # sigma sqrt(s) = 0.8 at s = 1


def test_conditional_score_is_x_times_the_gradient_of_the_log_density() -> None:
    process = GBMProcess(sigma=0.7, mu=0.2)
    x1 = torch.tensor([[1.2, 1.9]], dtype=torch.float64).repeat(3, 1)
    t = torch.tensor([0.1, 0.5, 0.95], dtype=torch.float64)
    xt = torch.tensor([[0.8, 2.5], [1.4, 1.1], [3.0, 0.5]], dtype=torch.float64)
    s = (1 - t)[:, None]
    x = xt.clone().requires_grad_(True)
    mean, var = x1.log() + (0.2 - 0.49 / 2) * s, 0.49 * s
    log_p = -x.log() - (x.log() - mean) ** 2 / (2 * var) - 0.5 * torch.log(2 * math.pi * var)
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    torch.testing.assert_close(process.conditional_score(xt, x1, t), xt * grad)


def test_shift_to_and_from_positive() -> None:
    x = torch.linspace(-1, 1, 11)
    y = to_positive(x)
    assert float(y.min()) == 1.0 and float(y.max()) == 2.0
    torch.testing.assert_close(from_positive(y), x)
    assert from_positive(torch.tensor([0.3, 5.0])).tolist() == [-1.0, 1.0]  # clamp(x, 1, 2)


def test_fit_lognormal_per_pixel_and_global() -> None:
    generator = torch.Generator().manual_seed(2)
    logs = torch.randn(20000, 2, 3, generator=generator) * 0.3 + torch.arange(6.0).view(2, 3)
    per_pixel = fit_lognormal(logs.exp())
    assert per_pixel.mean.shape == (2, 3) == per_pixel.std.shape
    torch.testing.assert_close(per_pixel.mean, torch.arange(6.0).view(2, 3), atol=0.01, rtol=0)
    torch.testing.assert_close(per_pixel.std, torch.full((2, 3), 0.3), atol=0.01, rtol=0)
    glob = fit_lognormal(logs.exp(), per_pixel=False)
    assert glob.mean.shape == () and abs(float(glob.mean) - 2.5) < 0.01
    restored = LogNormal.from_config(**per_pixel.to_config())
    torch.testing.assert_close(restored.mean, per_pixel.mean)


def test_marginal_matches_the_moments_of_log_x_for_non_log_normal_data() -> None:
    """Two-point data (like digit pixels at 1 and 2): the pushed fit has the exact first two
    moments of log X_1, which is not log-normal."""
    process = GBMProcess(sigma=0.8, mu=0.5)
    generator = torch.Generator().manual_seed(3)
    x1 = 1 + (torch.rand(200_000, 1, generator=generator) < 0.3).float()
    start = process.marginal(fit_lognormal(x1), s=1.0)
    x_noise = process.sample(x1, torch.zeros(len(x1)), generator=generator).xt
    assert abs(float(x_noise.log().mean()) - float(start.mean)) < 0.01
    assert abs(float(x_noise.log().std()) - float(start.std)) < 0.01


def test_bad_values_raise_and_name_them() -> None:
    with pytest.raises(ValueError, match="sigma must be finite and > 0, got -0.5"):
        GBMProcess(sigma=-0.5)
    with pytest.raises(ValueError, match="mu must be a finite number, got nan"):
        GBMProcess(mu=float("nan"))
    with pytest.raises(ValueError, match="positive data, got minimum -1.0"):
        fit_lognormal(torch.tensor([[1.0], [-1.0]]))
    with pytest.raises(ValueError, match=r"shape \(N >= 2, \.\.\.\), got \(1, 3\)"):
        fit_lognormal(torch.ones(1, 3))
    with pytest.raises(ValueError, match="std must be >= 0, got minimum -0.1"):
        LogNormal.from_config([0.0, 0.0], [0.1, -0.1])
    with pytest.raises(ValueError, match=r"t must have shape \(2,\), got \(3,\)"):
        GBMProcess().sample(torch.ones(2, 1), torch.ones(3))
