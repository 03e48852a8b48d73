"""The batch type every data source hands the trainer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Batch:
    """One training batch: data ``x1``, optional ``labels`` and, for paired data (reflow),
    the noise ``x0`` each ``x1`` was generated from and, for phased pairs, the teacher's
    states ``xb`` ``(B, K + 1, *D)`` at the phase boundaries."""

    x1: Tensor
    labels: Tensor | None = None
    x0: Tensor | None = None
    xb: Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(move(self.x1), move(self.labels), move(self.x0), move(self.xb))
