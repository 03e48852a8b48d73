"""What every sampler returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class SampleResult:
    """A sampler's output.

    Attributes:
        x: ``(B, *D)`` the final state.
        nfe: the number of field evaluations actually made (counted by a wrapper
            around the field, not computed from the step count).
        trajectory: ``(K + 1, B, *D)`` states at ``times`` when requested, else ``None``.
        times: ``(K + 1,)`` the times of the trajectory (or of the grid) when known.
    """

    x: Tensor
    nfe: int
    trajectory: Tensor | None = None
    times: Tensor | None = None
