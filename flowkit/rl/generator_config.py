"""The ``flowkit reinflow`` config of a generator fine-tuned against a reward
(``task: generator``): generator, reward, ppo and train sections.

``generator`` and ``reward`` may not change on resume; ``ppo`` and ``train`` may.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowkit.rl.config import RLLoopConfig

__all__ = ["GENERATOR_FROZEN_ON_RESUME", "GeneratorConfig", "GeneratorPPOConfig",
           "GeneratorRewardConfig", "RewardConfig"]  # fmt: skip

GENERATOR_FROZEN_ON_RESUME = ("generator", "reward")


@dataclass
class GeneratorConfig:
    """The pretrained flow (``model``: a run, pipeline or model directory that
    ``flowkit.load`` reads; a velocity field on the rectified path) and its noisy chain:
    ``steps`` K and the noise bounds of ``sigma(t_k)`` (per step and channel)."""

    model: str = "runs/digits"
    steps: int = 4
    sigma_min: float = 0.1
    sigma_max: float = 1.0


@dataclass
class RewardConfig:
    """``kind: digits_class``: the shipped digits classifier's probability of class
    ``target`` (``weights``: another classifier file)."""

    kind: str = "digits_class"
    target: int = 3
    weights: str | None = None


@dataclass
class GeneratorPPOConfig:
    """One-step episodes: each iteration draws ``batch_size`` noisy chains, rewards their
    last state, takes ``advantage = reward - mean(reward of the batch)`` (the batch-mean
    baseline; no critic), then runs ``epochs`` of minibatch PPO on the stored chains with
    ``kl_coef`` times the exact chain KL to the frozen pretrained model. ``lr`` is the
    field's learning rate, ``noise_lr`` the noise table's. ``eval_num`` noise-free samples
    (fixed seeded noise) are rewarded every ``eval_every`` iterations."""

    iterations: int = 40
    batch_size: int = 256
    epochs: int = 4
    minibatch_size: int = 128
    clip: float = 0.2
    lr: float = 1.0e-4
    noise_lr: float = 1.0e-3
    kl_coef: float = 0.01
    target_kl: float | None = None
    grad_clip: float | None = 1.0
    eval_every: int = 10
    eval_num: int = 512


@dataclass
class GeneratorRewardConfig:
    """A whole ``flowkit reinflow`` run of ``task: generator``."""

    task: str = "generator"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    ppo: GeneratorPPOConfig = field(default_factory=GeneratorPPOConfig)
    train: RLLoopConfig = field(default_factory=RLLoopConfig)
