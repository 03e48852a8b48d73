"""Couplings between noise and data: ``coupling(x0, x1, cond=None) -> (x0, x1, cond)``,
always a permutation of the batch given (no sampling with replacement)."""

from flowkit._lazy import lazy_getattr

__all__ = [
    "Independent",
    "MinibatchOT",
]

__getattr__ = lazy_getattr(
    __name__,
    {
        "Independent": "independent",
        "MinibatchOT": "minibatch_ot",
    },
)
