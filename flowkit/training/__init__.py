"""Training: config, the trainer loop and its reusable parts."""

from flowkit._lazy import lazy_getattr

__all__ = [
    "EMA",
    "CheckpointManager",
    "ConfigError",
    "NonFiniteLossError",
    "RunConfig",
    "Trainer",
    "TrainingInterrupted",
    "load_config",
    "warmup_lr",
]

__getattr__ = lazy_getattr(
    __name__,
    {
        "EMA": "ema",
        "CheckpointManager": "checkpoint",
        "ConfigError": "config",
        "NonFiniteLossError": "trainer",
        "RunConfig": "config",
        "Trainer": "trainer",
        "TrainingInterrupted": "interrupts",
        "load_config": "config",
        "warmup_lr": "trainer",
    },
)
