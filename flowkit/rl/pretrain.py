"""Behaviour cloning of a flow policy by rectified flow on demonstrations.

The velocity net is fitted with flowkit's flow-matching loss
(:class:`flowkit.objectives.FlowMatchingLoss`, rectified path, ``t ~ U[1e-3, 1]``), the
state as the condition: per sample

    L = || v(t a + (1 - t) a_0, t, s) - (a - a_0) ||^2,   a_0 ~ N(0, I),

with ``a`` the demonstrated action mapped into the policy's box ``[-1, 1]^A`` and ``s`` the
observation normalised by the demonstrations' statistics (the normaliser starts from them).
The noise net is not trained here; PPO trains it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowkit.objectives.flow_matching import FlowMatchingLoss
from flowkit.rl.normalizer import RunningNorm
from flowkit.rl.policy import ActionBounds, NoisyFlowPolicy

__all__ = ["behaviour_clone"]


class _ObsConditioned(torch.nn.Module):
    """``field(x, t, class_labels=obs)``: the velocity net in the loss's call shape."""

    def __init__(self, policy: NoisyFlowPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.prediction = "velocity"

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor) -> Tensor:
        return self.policy.velocity(x, t, class_labels)


def behaviour_clone(
    policy: NoisyFlowPolicy,
    normalizer: RunningNorm,
    bounds: ActionBounds,
    obs: Tensor,
    actions: Tensor,
    steps: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
) -> list[float]:
    """Fit ``policy.velocity`` to ``(obs, actions)`` (environment units) for ``steps`` Adam
    steps; update ``normalizer`` with the demonstrations first. Returns the loss every 100
    steps."""
    if obs.shape[0] != actions.shape[0] or actions.shape[1] != policy.action_dim:
        raise ValueError(
            f"demonstrations hold obs {tuple(obs.shape)} and actions {tuple(actions.shape)}; "
            f"the policy needs (N, {policy.obs_dim}) and (N, {policy.action_dim})"
        )
    normalizer.update(obs)
    cond = normalizer(obs)
    target = bounds.from_env(actions).clamp(-1.0, 1.0)
    loss_fn = FlowMatchingLoss()
    field = _ObsConditioned(policy)
    optimizer = torch.optim.Adam(policy.velocity.parameters(), lr=lr)
    losses, window = [], 0.0
    for step in range(steps):
        index = torch.randint(0, obs.shape[0], (batch_size,), generator=generator)
        loss = loss_fn(field, target[index], cond=cond[index], generator=generator).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window += float(loss.detach())
        if (step + 1) % 100 == 0 or step + 1 == steps:
            losses.append(window / (100 if (step + 1) % 100 == 0 else (step + 1) % 100))
            window = 0.0
    return losses
