"""Rollouts of the noisy chain in vector environments, and noise-free evaluation.

A rollout of ``T`` steps in ``N`` environments starts from a reset with seeds that depend
only on ``(seed, iteration)`` and keeps, per step, the normalised observation the policy
saw, the whole chain, its log-likelihood, ``V(s_t)``, ``V(s'_t)`` (of the true next
observation: the final one when an episode ended) and the termination flags that
:func:`flowkit.rl.advantages.gae` needs. The observation normaliser is frozen during the
rollout and updated with its observations afterwards, so ``V(s_t)`` and ``V(s'_{t-1})``
see the same normalisation; the critic, which does not change during a rollout either, is
evaluated once on all ``T N`` observations at the end. The rollout's last step counts as a
truncation (bootstrapped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from flowkit.rl.normalizer import RunningNorm
from flowkit.rl.policy import ActionBounds, NoisyFlowPolicy

__all__ = ["Rollout", "collect_rollout", "evaluate"]


@dataclass
class Rollout:
    """Tensors of shape ``(T, N, ...)`` and the returns of the episodes that finished."""

    obs: Tensor
    chain: Tensor
    log_prob: Tensor
    values: Tensor
    next_values: Tensor
    rewards: Tensor
    terminated: Tensor
    done: Tensor
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)

    @property
    def env_steps(self) -> int:
        return self.rewards.numel()


def _next_obs(next_obs: np.ndarray, done: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """The observation that followed each step: ``info["final_obs"]`` where one ended."""
    if not done.any():
        return next_obs
    true_next = next_obs.copy()
    for i in np.flatnonzero(done):
        true_next[i] = info["final_obs"][i]
    return true_next


@torch.no_grad()
def collect_rollout(
    envs: Any,
    policy: NoisyFlowPolicy,
    value: nn.Module,
    normalizer: RunningNorm,
    bounds: ActionBounds,
    steps: int,
    seeds: list[int],
    generator: torch.Generator,
    reward_scale: float = 1.0,
) -> Rollout:
    """``steps`` steps of every environment with the noisy chain (see module docstring)."""
    raw, _ = envs.reset(seed=seeds)
    num = raw.shape[0]
    keys = ("obs", "next_obs", "chain", "log_prob", "rewards", "terminated", "done")
    rows: dict[str, list[Tensor]] = {k: [] for k in keys}
    seen = []
    running, lengths = np.zeros(num), np.zeros(num, dtype=np.int64)
    returns, lens = [], []
    for t in range(steps):
        seen.append(raw)
        obs = normalizer(torch.as_tensor(raw, dtype=torch.float32))
        sample = policy.sample(obs, generator)
        action = bounds.to_env(sample.action).numpy().astype(envs.single_action_space.dtype)
        next_raw, reward, terminated, truncated, info = envs.step(action)
        done = terminated | truncated
        if t == steps - 1:
            done = np.ones_like(done)
        true_next = _next_obs(next_raw, terminated | truncated, info)
        running += reward
        lengths += 1
        for i in np.flatnonzero(terminated | truncated):
            returns.append(float(running[i]))
            lens.append(int(lengths[i]))
            running[i], lengths[i] = 0.0, 0
        rows["obs"].append(obs)
        rows["chain"].append(sample.chain)
        rows["log_prob"].append(sample.log_prob)
        rows["next_obs"].append(torch.as_tensor(true_next, dtype=torch.float32))
        rows["rewards"].append(torch.as_tensor(reward, dtype=torch.float32) * reward_scale)
        rows["terminated"].append(torch.as_tensor(terminated))
        rows["done"].append(torch.as_tensor(done))
        raw = next_raw
    stacked = {k: torch.stack(v) for k, v in rows.items()}
    # the critic, frozen during the rollout, in two batched calls instead of 2T small ones
    next_obs = stacked.pop("next_obs")
    stacked["values"] = value(stacked["obs"].flatten(0, 1)).view(steps, num)
    stacked["next_values"] = value(normalizer(next_obs.flatten(0, 1))).view(steps, num)
    normalizer.update(torch.as_tensor(np.concatenate(seen), dtype=torch.float32))
    return Rollout(**stacked, episode_returns=returns, episode_lengths=lens)


@torch.no_grad()
def evaluate(
    envs: Any,
    policy: NoisyFlowPolicy,
    normalizer: RunningNorm,
    bounds: ActionBounds,
    seeds: list[int],
    generator: torch.Generator,
    max_steps: int = 100_000,
) -> list[float]:
    """Returns of one episode per environment with the noise-free chain (``sigma = 0``) from
    ``a_0`` drawn with ``generator``: reproducible for the same seeds and generator state."""
    raw, _ = envs.reset(seed=seeds)
    num = raw.shape[0]
    total, active = np.zeros(num), np.ones(num, dtype=bool)
    for _ in range(max_steps):
        obs = normalizer(torch.as_tensor(raw, dtype=torch.float32))
        a0 = torch.randn(num, policy.action_dim, generator=generator)
        action = bounds.to_env(policy.deterministic(obs, a0)).numpy()
        raw, reward, terminated, truncated, _ = envs.step(
            action.astype(envs.single_action_space.dtype)
        )
        total += np.where(active, reward, 0.0)
        active &= ~(terminated | truncated)
        if not active.any():
            break
    return [float(x) for x in total]
