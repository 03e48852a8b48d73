"""The smaller parts: normaliser, Gaussian demonstrator policy, saved policies,
demonstrations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.distributions import Normal

from flowkit.files import FlowkitError, save_tensors
from flowkit.rl.demonstrations import load_demonstrations, make_demonstrations
from flowkit.rl.gaussian import GaussianPolicy
from flowkit.rl.normalizer import RunningNorm
from flowkit.rl.policy import ActionBounds, NoisyFlowPolicy
from flowkit.rl.saved import load_policy, save_policy


def test_running_norm_matches_the_statistics_of_all_batches() -> None:
    x = torch.randn(100, 3, generator=torch.Generator().manual_seed(0)) * 4 + 2
    norm = RunningNorm(3)
    for chunk in (x[:7], x[7:50], x[50:]):
        norm.update(chunk)
    torch.testing.assert_close(norm.mean, x.double().mean(0))
    torch.testing.assert_close(norm.var, x.double().var(0, unbiased=False))
    z = norm(x)
    assert z.dtype == torch.float32 and abs(float(z.mean())) < 1e-5
    norm.frozen = True
    norm.update(x * 10)
    torch.testing.assert_close(norm.mean, x.double().mean(0))


def test_gaussian_policy_scores_its_own_samples() -> None:
    torch.manual_seed(0)
    policy = GaussianPolicy(3, 2, hidden_dim=8, num_layers=1)
    obs = torch.randn(6, 3)
    with torch.no_grad():
        sample = policy.sample(obs, torch.Generator().manual_seed(1))
        mu, std = policy.mean(obs), policy.log_std.exp()
        expected = Normal(mu, std).log_prob(sample.action).sum(-1)
        torch.testing.assert_close(policy.log_prob(obs, sample.chain), expected)
        torch.testing.assert_close(sample.log_prob, expected)
        torch.testing.assert_close(policy.entropy(obs), Normal(mu, std).entropy().sum(-1))
    assert sample.chain.shape == (6, 2, 2)


@pytest.mark.parametrize("kind", ["flow", "gaussian"])
def test_a_saved_policy_acts_the_same_when_loaded(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    if kind == "flow":
        policy = NoisyFlowPolicy(3, 1, steps=2, hidden_dim=8, num_layers=1, noise_hidden_dim=4)
    else:
        policy = GaussianPolicy(3, 1, hidden_dim=8, num_layers=1)
    with torch.no_grad():
        for p in policy.parameters():
            p.normal_(0, 0.5)
    norm = RunningNorm(3)
    norm.update(torch.randn(50, 3) * 3)
    bounds = ActionBounds(torch.tensor([-2.0]), torch.tensor([2.0]))
    save_policy(tmp_path / "policy", policy, norm, bounds, "Pendulum-v1")
    saved = load_policy(tmp_path / "policy")
    obs, a0 = torch.randn(5, 3), torch.randn(5, 1)
    with torch.no_grad():
        expected = bounds.to_env(policy.deterministic(norm(obs), a0))
    assert saved.env_id == "Pendulum-v1" and type(saved.policy) is type(policy)
    assert torch.equal(saved.act(obs, a0), expected)
    (tmp_path / "policy" / "policy.json").write_text('{"format": "other"}')
    with pytest.raises(FlowkitError, match="not a flowkit flow policy"):
        load_policy(tmp_path / "policy")


def test_the_pendulum_controller_swings_up_and_balances(tmp_path: Path) -> None:
    demos = make_demonstrations("pendulum_energy", episodes=2, seed=0)
    assert demos["obs"].shape == (400, 3) and demos["actions"].shape == (400, 1)
    assert float(demos["actions"].abs().max()) <= 2.0
    assert float(demos["returns"].mean()) > -400  # zero torque scores far lower
    save_tensors({"obs": demos["obs"]}, tmp_path / "bad.safetensors")
    with pytest.raises(FlowkitError, match="no 'actions' tensor"):
        load_demonstrations(tmp_path / "bad.safetensors")
    with pytest.raises(FlowkitError, match="unknown demonstrations"):
        make_demonstrations("cartpole_magic", episodes=1)
