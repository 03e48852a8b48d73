"""The independent coupling: noise and data paired as they were drawn."""

from __future__ import annotations

from torch import Tensor


class Independent:
    """``pi(x0, x1) = p0(x0) p1(x1)``: returns the batch unchanged.

    Every coupling is a callable ``coupling(x0, x1, cond=None) -> (x0, x1, cond)`` that
    returns a permutation of the batch it was given (here, the identity). It is also the
    right coupling for reflow pairs, whose noise and sample are already matched.
    """

    def __call__(
        self, x0: Tensor, x1: Tensor, cond: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        if x0.shape != x1.shape:
            raise ValueError(f"x0 has shape {tuple(x0.shape)} but x1 has {tuple(x1.shape)}")
        return x0, x1, cond

    def __repr__(self) -> str:
        return "Independent()"
