"""Shared conventions of flowkit fields: prediction names (from :mod:`flowkit.paths`) and
time broadcasting."""

from __future__ import annotations

import torch
from torch import Tensor

from flowkit.paths.conversions import PREDICTIONS, check_prediction

__all__ = ["PREDICTIONS", "broadcast_time", "check_prediction"]


def broadcast_time(t: Tensor | float, x: Tensor) -> Tensor:
    """Times ``t`` as a tensor of shape ``(B,)`` with ``B = x.shape[0]``, on x's device.

    ``t`` may be a python number, a 0-d tensor (both broadcast to every sample) or a
    tensor of shape ``(B,)``. The dtype is float32, or float64 for float64 ``x``: half
    precision would round ``t * 999`` to coarse steps.
    """
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    t = torch.as_tensor(t, device=x.device, dtype=dtype)
    if t.ndim == 0:
        return t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(
            f"t must be a number or have shape ({x.shape[0]},) to match x, got {tuple(t.shape)}"
        )
    return t
