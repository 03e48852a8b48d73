"""A Gaussian MLP policy with the chain interface, for training demonstrators with PPO.

Where no scripted controller is easy (Hopper), demonstrations come from a Gaussian policy
trained by flowkit's own PPO (``policy.kind: gaussian``). It is the one-step "chain"

    a ~ N(mu(s), diag exp(2 log_std)),    log_std a learned vector (state-independent),

stored as a chain of two states ``(0, a)`` so that rollouts, PPO and checkpoints treat it
exactly as a :class:`flowkit.rl.policy.NoisyFlowPolicy`: ``sample``, ``log_prob``,
``entropy`` and ``deterministic`` (the mean; ``a0`` is ignored) have the same shapes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowkit.rl.networks import ResidualMLP
from flowkit.rl.policy import LOG_2PI, ChainSample

__all__ = ["GaussianPolicy"]


class GaussianPolicy(nn.Module):
    """``N(mu(s), sigma^2)`` over the policy's box; ``steps`` is 1 (one Gaussian step)."""

    kind = "gaussian"

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dim: int = 256,
        num_layers: int = 2,
        init_std: float = 0.6,
    ) -> None:
        super().__init__()
        if init_std <= 0:
            raise ValueError(f"init_std={init_std} must be > 0")
        self.obs_dim, self.action_dim, self.steps = obs_dim, action_dim, 1
        self.init_kwargs = {"obs_dim": obs_dim, "action_dim": action_dim,
                            "hidden_dim": hidden_dim, "num_layers": num_layers,
                            "init_std": init_std}  # fmt: skip
        self.mean = ResidualMLP(obs_dim, action_dim, hidden_dim, num_layers, zero_output=True)
        self.log_std = nn.Parameter(torch.full((action_dim,), math.log(init_std)))

    def set_noise_bounds(self, sigma_min: float, sigma_max: float) -> None:
        """No bounds: the standard deviation is learned freely (kept for the interface)."""

    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> ChainSample:
        mu = self.mean(obs)
        eps = torch.randn(mu.shape, generator=generator, device=obs.device)
        a = mu + self.log_std.exp() * eps
        chain = torch.stack([torch.zeros_like(a), a], dim=1)
        return ChainSample(chain, self.log_prob(obs, chain))

    def log_prob(self, obs: Tensor, chain: Tensor) -> Tensor:
        """``log N(a; mu(s), sigma^2)`` summed over the action dims: ``(B,)``."""
        z = (chain[:, -1] - self.mean(obs)) / self.log_std.exp()
        return (-0.5 * z.square() - self.log_std - 0.5 * LOG_2PI).sum(-1)

    def entropy(self, obs: Tensor) -> Tensor:
        h = (0.5 * (LOG_2PI + 1) + self.log_std).sum()
        return h.expand(obs.shape[0])

    def deterministic(self, obs: Tensor, a0: Tensor | None = None) -> Tensor:
        """The mean action ``mu(s)``."""
        return self.mean(obs)
