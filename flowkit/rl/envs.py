"""Gymnasium environments for ReinFlow: vectorised construction, space checks, seeds.

gymnasium is the optional ``rl`` extra: it is imported here, inside functions, and a missing
install is an :class:`ImportError` that names the extra.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flowkit.files import FlowkitError

__all__ = ["EnvSpaceError", "check_spaces", "import_gymnasium", "iteration_seeds", "make_envs"]

INSTALL_HINT = "pip install 'flowkit[rl]'"


class EnvSpaceError(FlowkitError, ValueError):
    """An environment whose spaces a flow policy cannot act in."""


def import_gymnasium() -> Any:
    """``gymnasium``, or an ImportError that names the ``rl`` extra."""
    try:
        import gymnasium
    except ImportError as error:
        raise ImportError(
            f"ReinFlow needs gymnasium (with MuJoCo for locomotion): {INSTALL_HINT}"
        ) from error
    return gymnasium


def make_envs(env_id: str, num_envs: int, max_episode_steps: int | None = None,
              kwargs: dict[str, Any] | None = None) -> Any:  # fmt: skip
    """A ``SyncVectorEnv`` of ``num_envs`` copies that resets an ended episode within the
    step that ended it (``SAME_STEP``: the final observation is in ``info["final_obs"]``)."""
    gym = import_gymnasium()
    if num_envs < 1:
        raise ValueError(f"env.num_envs must be >= 1, got {num_envs}")
    extra = dict(kwargs or {})
    if max_episode_steps is not None:
        extra["max_episode_steps"] = max_episode_steps
    try:
        gym.spec(env_id)
    except gym.error.Error as error:
        raise FlowkitError(
            f"unknown environment env.id={env_id!r} ({error}); e.g. Pendulum-v1 or Hopper-v5"
        ) from error
    fns = [lambda: gym.make(env_id, **extra) for _ in range(num_envs)]
    mode = gym.vector.AutoresetMode.SAME_STEP
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)


def check_spaces(envs: Any, action_dim: int | None = None) -> tuple[int, int]:
    """``(obs_dim, action_dim)`` of a vector env whose spaces are flat boxes; an
    :class:`EnvSpaceError` for a non-Box space or a policy of another action size."""
    gym = import_gymnasium()
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    if not isinstance(act_space, gym.spaces.Box):
        raise EnvSpaceError(
            f"the action space is {act_space}, not a Box: a flow policy outputs continuous "
            "actions; use an environment with continuous (Box) actions"
        )
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise EnvSpaceError(
            f"the observation space is {obs_space}; a flat Box is needed (wrap the "
            "environment with gymnasium.wrappers.FlattenObservation)"
        )
    size = int(np.prod(act_space.shape))
    if action_dim is not None and action_dim != size:
        raise EnvSpaceError(
            f"the policy outputs {action_dim} action dimensions but the environment's action "
            f"space {act_space} has {size}; build the policy for this environment"
        )
    return int(obs_space.shape[0]), size


def iteration_seeds(seed: int, iteration: int, count: int, stream: int = 0) -> list[int]:
    """Reset seeds of ``count`` environments at ``iteration``: a function of
    ``(seed, stream, iteration, index)`` alone (stream 0: training, 1: evaluation)."""
    return [
        int(np.random.SeedSequence([seed, stream, iteration, i]).generate_state(1)[0])
        for i in range(count)
    ]
