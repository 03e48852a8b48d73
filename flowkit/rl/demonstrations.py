"""Demonstrations made locally: scripted controllers rolled out in gymnasium, saved as
safetensors (``obs`` ``(N, S)``, ``actions`` ``(N, A)`` in environment units, ``returns``
``(episodes,)``).

Pendulum-v1 (``pendulum_energy``): with ``theta = 0`` upright, the dynamics are
``theta'' = 3 g / (2 l) sin(theta) + 3 u / (m l^2) = 15 sin(theta) + 3 u`` (g = 10, m = l = 1),
which conserve ``E = theta'^2 / 2 + 15 cos(theta)`` when ``u = 0``; upright at rest
``E* = 15``. Far from the top the controller pumps energy,
``u = k_E (E* - E) theta'`` (so ``dE/dt = 3 k_E (E* - E) theta'^2 >= 0`` below ``E*``),
and near the top (``cos(theta) > 0.85``) it balances with the PD law
``u = -(k_p theta + k_d theta')`` (closed loop ``theta'' = (15 - 3 k_p) theta -
3 k_d theta'``: stable for ``k_p > 5``). Torques are clipped to ``[-2, 2]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from flowkit.files import FlowkitError, load_tensors, save_tensors
from flowkit.rl.envs import iteration_seeds, make_envs

__all__ = [
    "CONTROLLERS",
    "load_demonstrations",
    "make_demonstrations",
    "pendulum_energy",
    "policy_demonstrations",
    "rollout_controller",
    "save_demonstrations",
]


def pendulum_energy(obs: np.ndarray, k_energy: float = 0.25, k_p: float = 12.0,
                    k_d: float = 2.5) -> np.ndarray:  # fmt: skip
    """Energy-shaping swing-up and PD balance for Pendulum-v1: ``(N, 3) -> (N, 1)``."""
    cos, sin, omega = obs[:, 0], obs[:, 1], obs[:, 2]
    theta = np.arctan2(sin, cos)
    energy = 0.5 * omega**2 + 15.0 * cos
    swing = k_energy * (15.0 - energy) * omega
    balance = -(k_p * theta + k_d * omega)
    torque = np.where(cos > 0.85, balance, swing)
    # at rest at the bottom the pump has nothing to act on: give it a push
    torque = np.where((np.abs(omega) < 1e-3) & (cos < -0.99), 1.0, torque)
    return np.clip(torque, -2.0, 2.0)[:, None].astype(np.float32)


CONTROLLERS = {"pendulum_energy": ("Pendulum-v1", pendulum_energy)}


def make_demonstrations(
    name: str, episodes: int, seed: int = 0, action_noise: float = 0.0
) -> dict[str, torch.Tensor]:
    """Roll out the built-in controller ``name`` (see :func:`rollout_controller`)."""
    if name not in CONTROLLERS:
        raise FlowkitError(
            f"unknown demonstrations {name!r}; built in: {sorted(CONTROLLERS)} (or give a "
            "safetensors file with obs and actions, or a saved policy folder)"
        )
    env_id, controller = CONTROLLERS[name]
    return rollout_controller(env_id, controller, episodes, seed, action_noise)


def policy_demonstrations(
    folder: str | os.PathLike, env_id: str, episodes: int, seed: int = 0,
    action_noise: float = 0.0,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Roll out a saved policy (``RUN/policy`` of ``flowkit reinflow``) noise-free."""
    from flowkit.rl.saved import load_policy

    saved = load_policy(folder)
    if saved.env_id != env_id:
        raise FlowkitError(
            f"the policy in {str(folder)!r} was trained on {saved.env_id}, not {env_id}"
        )

    def controller(obs: np.ndarray) -> np.ndarray:
        return saved.act(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    return rollout_controller(env_id, controller, episodes, seed, action_noise)


def rollout_controller(
    env_id: str,
    controller: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    seed: int = 0,
    action_noise: float = 0.0,
) -> dict[str, torch.Tensor]:
    """One episode per vector env (seeds from ``seed``) of ``controller`` (raw observations
    ``(N, S)`` -> environment actions ``(N, A)``). ``action_noise`` (std, relative to half the
    action range) is added to the *executed* action, while the recorded action is the
    controller's: the states then include recoveries from mistakes (DART-style)."""
    envs = make_envs(env_id, episodes)
    rng = np.random.default_rng(seed)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    raw, _ = envs.reset(seed=iteration_seeds(seed, 0, episodes, stream=2))
    obs, actions = [], []
    active, totals = np.ones(episodes, dtype=bool), np.zeros(episodes)
    while active.any():
        action = controller(raw)
        executed = action + action_noise * (high - low) / 2 * rng.standard_normal(action.shape)
        obs.append(raw[active])
        actions.append(action[active])
        raw, reward, terminated, truncated, _ = envs.step(
            np.clip(executed, low, high).astype(envs.single_action_space.dtype)
        )
        totals += np.where(active, reward, 0.0)
        active &= ~(terminated | truncated)
    envs.close()
    return {
        "obs": torch.as_tensor(np.concatenate(obs), dtype=torch.float32),
        "actions": torch.as_tensor(np.concatenate(actions), dtype=torch.float32),
        "returns": torch.as_tensor(totals, dtype=torch.float32),
    }


def load_demonstrations(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A safetensors file of demonstrations; errors name the file and what is missing."""
    tensors = load_tensors(path, "cpu", "demonstrations file")
    for key in ("obs", "actions"):
        if key not in tensors:
            raise FlowkitError(
                f"demonstrations file {str(path)!r} has no {key!r} tensor (it holds "
                f"{sorted(tensors)}); it needs obs (N, S) and actions (N, A)"
            )
    if tensors["obs"].shape[0] != tensors["actions"].shape[0] or tensors["obs"].ndim != 2:
        raise FlowkitError(
            f"demonstrations file {str(path)!r}: obs {tuple(tensors['obs'].shape)} and actions "
            f"{tuple(tensors['actions'].shape)} must be (N, S) and (N, A)"
        )
    return tensors


def save_demonstrations(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write demonstrations atomically as safetensors."""
    return save_tensors({k: v.contiguous() for k, v in tensors.items()}, path)
