"""f-distill: one-step generators by f-divergence distribution matching (Xu, Nie & Vahdat
2025) from any flowkit or diffusers teacher; ``flowkit distill CONFIG``."""

from flowkit._lazy import lazy_getattr

__all__ = [
    "DIVERGENCES",
    "DistillConfig",
    "DistillLosses",
    "DistillTrainer",
    "Divergence",
    "divergence",
    "generate",
    "make_generator",
    "register",
]

__getattr__ = lazy_getattr(
    __name__,
    {
        "DIVERGENCES": "divergences",
        "DistillConfig": "config",
        "DistillLosses": "step",
        "DistillTrainer": "trainer",
        "Divergence": "divergences",
        "divergence": "divergences",
        "generate": "networks",
        "make_generator": "networks",
        "register": "divergences",
    },
)
