"""The ``flowkit reinflow`` config: env, policy, pretrain, ppo and loop sections.

Read by :func:`flowkit.training.config.load_config` with ``schema=ReinFlowConfig``, so every
key is checked and a typo is named. ``env``, ``policy`` and ``pretrain`` may not change on
resume; ``ppo`` and ``train`` may (e.g. more iterations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EnvConfig",
    "FROZEN_ON_RESUME",
    "PPOConfig",
    "PolicyConfig",
    "PretrainConfig",
    "ReinFlowConfig",
    "RLLoopConfig",
]

FROZEN_ON_RESUME = ("env", "policy", "pretrain")


@dataclass
class EnvConfig:
    """Vectorised gymnasium environments. Every iteration resets them with seeds derived
    from ``(train.seed, iteration, env index)``, so a rollout never depends on the one
    before it (that is what makes resume exact); choose ``steps_per_iteration`` at least an
    episode long, or episodes are cut (and bootstrapped) at the iteration's end."""

    id: str = "Pendulum-v1"
    num_envs: int = 8
    steps_per_iteration: int = 200
    max_episode_steps: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PolicyConfig:
    """The noisy flow policy (:class:`flowkit.rl.policy.NoisyFlowPolicy`), the critic and the
    observation normaliser. ``kind: gaussian`` trains a Gaussian MLP policy instead
    (:class:`flowkit.rl.gaussian.GaussianPolicy`; ``hidden_dim``, ``num_layers`` apply), the
    way demonstrators are made where no scripted controller exists. ``init_from`` starts
    from another run's saved policy (``RUN/pretrained`` or ``RUN/policy``) instead of
    pretraining. With
    ``update_obs_norm`` False the normaliser keeps the statistics it started with (the
    demonstrations'), so a pretrained policy sees the inputs it was trained on."""

    kind: str = "flow"
    steps: int = 4
    sigma_min: float = 0.10
    sigma_max: float = 0.24
    hidden_dim: int = 256
    num_layers: int = 3
    noise_hidden_dim: int = 128
    noise_layers: int = 2
    value_hidden_dim: int = 256
    value_layers: int = 3
    normalize_obs: bool = True
    update_obs_norm: bool = True
    init_from: str | None = None


@dataclass
class PretrainConfig:
    """Behaviour cloning by rectified flow on demonstrations before PPO.

    ``demonstrations`` is a built-in scripted controller (``pendulum_energy``), a
    safetensors file with ``obs`` ``(N, S)`` and ``actions`` ``(N, A)`` (environment
    units), a saved policy folder (``RUN/policy`` of a ``kind: gaussian`` run, rolled out
    noise-free in ``env.id``), or None (no pretraining). ``episodes`` rollouts of the
    controller are made, with ``action_noise`` (std, relative to half the action range)
    added to the executed actions so the states cover recoveries; ``steps`` of flow
    matching then fit the policy."""

    demonstrations: str | None = "pendulum_energy"
    episodes: int = 20
    action_noise: float = 0.0
    steps: int = 2000
    lr: float = 1e-3
    batch_size: int = 256


@dataclass
class PPOConfig:
    """PPO on the chain (ReinFlow's defaults where they apply) and the noise schedule:
    ``sigma_max`` decays linearly from ``policy.sigma_max`` to ``sigma_max_end`` over the
    iterations (None: constant)."""

    iterations: int = 50
    epochs: int = 5
    minibatch_size: int = 400
    clip: float = 0.01
    gamma: float = 0.99
    lam: float = 0.95
    actor_lr: float = 4.5e-5
    critic_lr: float = 6.5e-4
    vf_coef: float = 1.0
    ent_coef: float = 0.0
    bc_coef: float = 0.0
    target_kl: float | None = 0.01
    grad_clip: float | None = 1.0
    reward_scale: float = 1.0
    sigma_max_end: float | None = None
    critic_warmup_iterations: int = 0
    eval_every: int = 5
    eval_episodes: int = 5


@dataclass
class RLLoopConfig:
    """Seed, threads and checkpoints (at iteration boundaries only). Everything runs on the
    CPU: rollouts step CPU environments with batches of a few states, where more than one
    torch thread only adds overhead (and on a busy machine, much more), so ``threads``
    sets torch's thread count while :meth:`ReinFlowTrainer.fit` runs (0: leave it)."""

    seed: int = 0
    threads: int = 1
    checkpoint_every: int = 10
    checkpoint_minutes: float = 10.0
    keep_checkpoints: int = 2


@dataclass
class ReinFlowConfig:
    """A whole ``flowkit reinflow`` run of a policy (``task: policy``, the default; ``task:
    generator`` is :class:`flowkit.rl.generator_config.GeneratorRewardConfig`)."""

    task: str = "policy"
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    train: RLLoopConfig = field(default_factory=RLLoopConfig)
