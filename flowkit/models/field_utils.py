"""Shared conventions of flowkit fields: prediction and path names (from :mod:`flowkit.paths`)
and time broadcasting."""

from __future__ import annotations

import torch
from torch import Tensor

from flowkit.paths.affine import PATHS
from flowkit.paths.conversions import PREDICTIONS, check_prediction

__all__ = ["MULTIPLICATIVE", "PREDICTIONS", "broadcast_time", "check_path", "check_prediction"]

MULTIPLICATIVE = "gbm"
"""The ``path`` a multiplicative (geometric Brownian motion) model records: its process and
sampler live in its pipeline's scheduler, not in an affine path."""


def check_path(path: str, path_kwargs: dict | None) -> None:
    """Raise ``ValueError`` unless ``path`` names an affine path (or the GBM process) and
    ``path_kwargs`` is a mapping of its parameters."""
    if path != MULTIPLICATIVE and path not in PATHS:
        raise ValueError(
            f"path={path!r}: expected one of {sorted(PATHS)} (an affine path) or "
            f"{MULTIPLICATIVE!r} (a multiplicative model)"
        )
    if path_kwargs is not None and not isinstance(path_kwargs, dict):
        raise ValueError(f"path_kwargs must be a mapping or None, got {path_kwargs!r}")


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
