"""Couplings between noise and data: ``coupling(x0, x1, cond=None) -> (x0, x1, cond)``."""

from flowkit.couplings.independent import Independent

__all__ = ["Independent"]
