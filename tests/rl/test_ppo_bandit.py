"""PPO on the chain raises the return of a tiny continuous bandit (pure torch)."""

from __future__ import annotations

import torch

from flowkit.rl.networks import ValueNet
from flowkit.rl.policy import NoisyFlowPolicy
from flowkit.rl.ppo import PPOBatch, PPOSettings, ppo_update

TARGET = torch.tensor([0.6, -0.4])


def _reward(action: torch.Tensor) -> torch.Tensor:
    return -(action.clamp(-1, 1) - TARGET).square().sum(-1)


def _run(updates: int, lr: float) -> tuple[float, float, list[float]]:
    torch.manual_seed(0)
    policy = NoisyFlowPolicy(1, 2, steps=2, sigma_min=0.05, sigma_max=0.3, hidden_dim=32,
                             num_layers=1, noise_hidden_dim=16, noise_layers=1)  # fmt: skip
    value = ValueNet(1, hidden_dim=16, num_layers=1)
    actor = torch.optim.Adam(policy.parameters(), lr=lr)
    critic = torch.optim.Adam(value.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    obs = torch.zeros(128, 1)
    settings = PPOSettings(epochs=4, minibatch_size=64, clip=0.2, target_kl=None)
    first_devs = []
    with torch.no_grad():
        start = float(_reward(policy.deterministic(obs[:1])).mean())
    for _ in range(updates):
        with torch.no_grad():
            sample = policy.sample(obs, gen)
            reward = _reward(sample.action)
            adv = reward - value(obs)
        batch = PPOBatch(obs, sample.chain, sample.log_prob, adv, reward)
        stats = ppo_update(policy, value, actor, critic, batch, settings, gen)
        first_devs.append(stats["first_ratio_dev"])
    with torch.no_grad():
        final = float(_reward(policy.deterministic(obs[:1])).mean())
    return start, final, first_devs


def test_ppo_raises_the_bandit_return() -> None:
    start, final, first_devs = _run(updates=10, lr=8e-3)
    assert final > start + 0.3, (start, final)
    assert final > -0.15, final
    assert max(first_devs) < 1e-5  # fresh rollouts: the first ratio is 1
    # with a zero learning rate the policy, and its return, stay where they were
    start0, final0, _ = _run(updates=2, lr=0.0)
    assert start0 == start and final0 == start0
