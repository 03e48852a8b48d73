"""Couplings between noise and data: ``coupling(x0, x1, cond=None) -> (x0, x1, cond)``,
always a permutation of the batch given (no sampling with replacement)."""

from flowkit.couplings.independent import Independent
from flowkit.couplings.minibatch_ot import MinibatchOT

__all__ = ["Independent", "MinibatchOT"]
