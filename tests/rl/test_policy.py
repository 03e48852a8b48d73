"""The noisy chain: exact log-likelihood, bounded noise, one grid, bad bounds."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from flowkit.rl.policy import ActionBounds, NoisyFlowPolicy, bounded_sigma, time_grid


def _policy(steps: int = 3, **kw) -> NoisyFlowPolicy:
    torch.manual_seed(0)
    policy = NoisyFlowPolicy(obs_dim=3, action_dim=2, steps=steps, hidden_dim=16, num_layers=1,
                             noise_hidden_dim=8, noise_layers=1, **kw)  # fmt: skip
    with torch.no_grad():  # a noise net that varies with the input (it starts at zero)
        policy.noise.net.output[-1].weight.normal_(0, 2.0)
    return policy


def _independent_log_prob(policy: NoisyFlowPolicy, obs, chain) -> torch.Tensor:
    """Step by step with torch.distributions, the grid written out as k / K."""
    k_steps = policy.steps
    total = Normal(0.0, 1.0).log_prob(chain[:, 0]).sum(-1)
    for k in range(k_steps):
        t = torch.full((obs.shape[0],), k / k_steps)
        a = chain[:, k]
        mu = a + policy.velocity(a, t, obs) / k_steps
        h = policy.noise(t, obs)
        lo, hi = math.log(policy.sigma_min**2), math.log(policy.sigma_max**2)
        std = torch.exp(0.5 * (lo + (hi - lo) * (torch.tanh(h) + 1) / 2))
        total = total + Normal(mu, std).log_prob(chain[:, k + 1]).sum(-1)
    return total


@pytest.mark.parametrize("steps", [1, 4])
def test_chain_log_prob_equals_an_independent_computation(steps: int) -> None:
    policy = _policy(steps)
    obs = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        sample = policy.sample(obs, torch.Generator().manual_seed(2))
        expected = _independent_log_prob(policy, obs, sample.chain)
        scored = policy.log_prob(obs, sample.chain)
        other = policy.log_prob(obs, sample.chain + 0.1)  # a different chain scores differently
    assert sample.chain.shape == (5, steps + 1, 2)
    torch.testing.assert_close(scored, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sample.log_prob, expected, rtol=1e-5, atol=1e-5)
    assert (other - expected).abs().min() > 1e-3


def test_acting_and_scoring_share_the_grid() -> None:
    policy = _policy(4)
    obs = torch.randn(64, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        sample = policy.sample(obs, torch.Generator().manual_seed(4))
        ratio = torch.exp(policy.log_prob(obs, sample.chain) - sample.log_prob)
        # the authors' bug: scoring on a shifted grid t_k = (k + 1) / K
        k_steps, chain = policy.steps, sample.chain
        wrong = torch.distributions.Normal(0.0, 1.0).log_prob(chain[:, 0]).sum(-1)
        sig = policy.sigmas(obs)
        for k in range(k_steps):
            t = torch.full((64,), (k + 1) / k_steps)
            mu = chain[:, k] + policy.velocity(chain[:, k], t, obs) / k_steps
            wrong = wrong + Normal(mu, sig[:, k]).log_prob(chain[:, k + 1]).sum(-1)
    assert (ratio - 1).abs().max() < 1e-5
    assert (torch.exp(wrong - sample.log_prob) - 1).abs().max() > 1e-2
    assert torch.equal(time_grid(4), torch.tensor([0.0, 0.25, 0.5, 0.75]))


def test_sigma_stays_in_bounds_for_extreme_inputs() -> None:
    h = torch.tensor([-1e30, -1e4, -3.0, 0.0, 3.0, 1e4, 1e30])
    sig = bounded_sigma(h, 0.1, 0.24)
    assert sig.min() >= 0.1 and sig.max() <= 0.24
    assert math.isclose(float(sig[0]), 0.1, rel_tol=1e-6)
    assert math.isclose(float(sig[-1]), 0.24, rel_tol=1e-6)
    assert math.isclose(float(sig[3]), math.sqrt(0.1 * 0.24), rel_tol=1e-6)  # geometric middle
    policy = _policy(2, sigma_min=0.05, sigma_max=0.3)
    with torch.no_grad():
        policy.noise.net.output[-1].bias.fill_(1e6)
        big = policy.sigmas(torch.full((4, 3), 1e6))
        policy.noise.net.output[-1].bias.fill_(-1e6)
        small = policy.sigmas(torch.full((4, 3), -1e6))
    assert torch.all(big <= 0.3) and torch.all(big > 0.29)
    assert torch.all(small >= 0.05) and torch.all(small < 0.051)


def test_entropy_is_the_gaussian_steps_entropy() -> None:
    policy = _policy(3)
    obs = torch.randn(4, 3)
    with torch.no_grad():
        expected = Normal(0.0, policy.sigmas(obs)).entropy().sum(dim=(1, 2))
        torch.testing.assert_close(policy.entropy(obs), expected)


def test_deterministic_action_is_the_noise_free_chain() -> None:
    policy = _policy(2)
    obs, a0 = torch.randn(3, 3), torch.randn(3, 2)
    with torch.no_grad():
        a = a0 + policy.velocity(a0, torch.zeros(3), obs) / 2
        a = a + policy.velocity(a, torch.full((3,), 0.5), obs) / 2
        torch.testing.assert_close(policy.deterministic(obs, a0), a)
        again = policy.deterministic(obs, a0)
    assert torch.equal(again, policy.deterministic(obs, a0))


def test_action_bounds_clip_and_map_to_the_box() -> None:
    bounds = ActionBounds(torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 1.0]))
    a = torch.tensor([[-5.0, 5.0], [0.0, 0.0], [0.5, -1.0]])
    env = bounds.to_env(a)
    torch.testing.assert_close(env, torch.tensor([[-2.0, 1.0], [0.0, 0.5], [1.0, 0.0]]))
    torch.testing.assert_close(bounds.from_env(env[1:]), a[1:])


@pytest.mark.parametrize(
    ("smin", "smax", "match"),
    [(0.3, 0.1, "reversed"), (0.0, 0.1, "must be > 0"), (-0.1, 0.1, "must be > 0")],
)
def test_bad_noise_bounds_are_errors(smin: float, smax: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NoisyFlowPolicy(3, 2, sigma_min=smin, sigma_max=smax)
    policy = _policy(1)
    with pytest.raises(ValueError, match=match):
        policy.set_noise_bounds(smin, smax)
