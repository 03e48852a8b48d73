"""Generalised advantage estimation with terminations and truncations kept apart.

For a rollout of ``T`` steps in ``N`` environments, with ``V(s'_t)`` the value of the
observation that *followed* step ``t`` (the final observation of an episode that ended at
``t``, not the reset observation that replaced it):

    delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t),
    A_t     = delta_t + gamma lambda (1 - done_t) A_{t+1},      A_T = 0,
    R_t     = A_t + V(s_t)                                      (the value target),

where ``done = terminated or truncated``. A terminated episode has no future value; a
truncated one (a time limit, or the end of the rollout) bootstraps from ``V(s'_t)``; both
cut the advantage trace so it never leaks into the next episode (Schulman et al. 2016).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["gae"]


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    done: Tensor,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """Advantages and value targets, each ``(T, N)``.

    Args:
        rewards, values, next_values: ``(T, N)``: ``r_t``, ``V(s_t)``, ``V(s'_t)``.
        terminated: ``(T, N)`` bool: the episode ended at ``t`` in a terminal state.
        done: ``(T, N)`` bool: the episode ended at ``t`` (terminated or truncated).
        gamma, lam: discount and GAE parameter, each in ``[0, 1]``.
    """
    shape = rewards.shape
    for name, x in (("values", values), ("next_values", next_values),
                    ("terminated", terminated), ("done", done)):  # fmt: skip
        if x.shape != shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, rewards {tuple(shape)}")
    for name, x in (("gamma", gamma), ("lam", lam)):
        if not 0.0 <= x <= 1.0:
            raise ValueError(f"{name}={x} must lie in [0, 1]")
    keep_value = 1.0 - terminated.to(rewards.dtype)
    keep_trace = 1.0 - (done | terminated).to(rewards.dtype)
    delta = rewards + gamma * keep_value * next_values - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(shape[0] - 1, -1, -1):
        running = delta[t] + gamma * lam * keep_trace[t] * running
        advantages[t] = running
    return advantages, advantages + values
