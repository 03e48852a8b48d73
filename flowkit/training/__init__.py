"""Training: config, the trainer loop and its reusable parts."""

from flowkit.training.checkpoint import CheckpointManager
from flowkit.training.config import ConfigError, RunConfig, load_config
from flowkit.training.ema import EMA
from flowkit.training.trainer import NonFiniteLossError, Trainer, warmup_lr

__all__ = [
    "EMA",
    "CheckpointManager",
    "ConfigError",
    "NonFiniteLossError",
    "RunConfig",
    "Trainer",
    "load_config",
    "warmup_lr",
]
