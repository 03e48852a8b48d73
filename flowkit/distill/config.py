"""The config of a distillation run: the trainer's ``data``, ``optim`` and ``train`` sections
plus ``teacher`` and ``distill``; every key checked by :func:`flowkit.training.load_config`
(``load_config(path, overrides, schema=DistillConfig)``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from flowkit.training.config import ConfigError, DataConfig, OptimConfig, TrainLoopConfig

__all__ = ["DistillConfig", "DistillSection", "TeacherConfig", "check_distill_config"]


@dataclass
class TeacherConfig:
    """The frozen teacher: anything :func:`flowkit.load` reads (a flowkit run or pipeline
    directory, a model directory, a diffusers pipeline directory)."""

    source: str | None = None


@dataclass
class DistillSection:
    """f-distill's own settings (see :mod:`flowkit.distill.step` for the math).

    Attributes:
        divergence: a name of :data:`flowkit.distill.divergences.DIVERGENCES`.
        weighting: time weighting ``w_t``: ``"dmd"`` or ``"none"``.
        t_min, t_max: noise levels ``t ~ U[t_min, t_max]`` (flowkit time, 1 = data).
        gan_weight: weight of the generator's GAN loss (0: none).
        disc_weight: weight of the discriminator's loss in the critic update (0: no
            discriminator; only ``reverse_kl`` works without one, as its ``h`` needs no ratio).
        critic_steps: critic (fake + head) updates per generator update.
        fake_lr, disc_lr: learning rates of the fake network and the head (None:
            ``optim.lr``); the other AdamW settings come from ``optim``.
        log_ratio_clip: ``|log r|`` is clamped to this before ``h``.
        feature_module: dotted name of the fake network's module the head reads (None: an
            MLP's last block, a UNet's mid-block).
        head_hidden: width of the discriminator head.
    """

    divergence: str = "js"
    weighting: str = "dmd"
    t_min: float = 0.02
    t_max: float = 0.98
    gan_weight: float = 0.01
    disc_weight: float = 1.0
    critic_steps: int = 1
    fake_lr: float | None = None
    disc_lr: float | None = None
    log_ratio_clip: float = 10.0
    feature_module: str | None = None
    head_hidden: int = 128


@dataclass
class DistillConfig:
    """A whole distillation run. ``data`` is the real data of the discriminator (the
    teacher's training data); ``optim.batch_size`` is the batch of every network."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillSection = field(default_factory=DistillSection)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)


def check_distill_config(cfg: DistillConfig) -> None:
    """Reject settings that cannot run, naming the key and the fix.

    Raises:
        ConfigError: a missing teacher, an unknown divergence or weighting, a bad noise range,
            a divergence that needs a discriminator without one, and loop settings f-distill
            does not support.
    """
    from flowkit.distill.divergences import divergence
    from flowkit.distill.update import TIME_WEIGHTS

    d = cfg.distill
    if not cfg.teacher.source:
        raise ConfigError("teacher.source is not set: give a flowkit run or a pipeline directory")
    try:
        divergence(d.divergence)
    except ValueError as error:
        raise ConfigError(f"distill.divergence: {error}") from None
    if d.weighting not in TIME_WEIGHTS:
        raise ConfigError(
            f"distill.weighting={d.weighting!r}; expected one of {list(TIME_WEIGHTS)}"
        )
    if not 0.0 <= d.t_min < d.t_max <= 1.0:
        raise ConfigError(
            f"distill.t_min={d.t_min}, distill.t_max={d.t_max}: need 0 <= t_min < t_max <= 1 "
            "(flowkit time, 1 = data; the default range is [0.02, 0.98])"
        )
    if d.divergence != "reverse_kl" and d.disc_weight <= 0:
        raise ConfigError(
            f"distill.divergence={d.divergence!r} weights samples by the density ratio, which "
            "the discriminator estimates: set distill.disc_weight > 0 (or use reverse_kl)"
        )
    if d.critic_steps < 1:
        raise ConfigError(f"distill.critic_steps={d.critic_steps}; expected an integer >= 1")
    if d.gan_weight < 0 or d.disc_weight < 0:
        raise ConfigError("distill.gan_weight and distill.disc_weight must be >= 0")
    if d.gan_weight > 0 and d.disc_weight <= 0:
        raise ConfigError(
            f"distill.gan_weight={d.gan_weight} needs a trained discriminator: set "
            "distill.disc_weight > 0 or distill.gan_weight=0"
        )
    if cfg.train.precision not in ("fp32", "bf16"):
        raise ConfigError(f"train.precision={cfg.train.precision!r}; expected 'fp32' or 'bf16'")
    if cfg.train.compile:
        raise ConfigError("train.compile=true is not supported by flowkit distill; set it false")
    if cfg.train.checkpoint_minutes < 0:
        raise ConfigError(
            f"train.checkpoint_minutes={cfg.train.checkpoint_minutes}; expected a number >= 0"
        )
