"""Exponential moving average of a model's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``ema_model``, a copy of ``model`` whose parameters track
    ``theta_ema <- decay * theta_ema + (1 - decay) * theta`` each time :meth:`update` is
    called (after every optimizer step).

    Buffers (e.g. normalisation statistics) are copied, not averaged. The averaged copy is
    a full module: it samples and saves like the model itself.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        self.decay = decay
        self._params = [p.detach() for p in model.parameters()]
        self._buffers = list(model.buffers())
        self.ema_model = copy.deepcopy(model).eval().requires_grad_(False)
        self._ema_params = list(self.ema_model.parameters())
        self._ema_buffers = list(self.ema_model.buffers())

    @torch.no_grad()
    def update(self) -> None:
        """One averaging step from the model's current weights."""
        torch._foreach_lerp_(self._ema_params, self._params, 1.0 - self.decay)
        for ema_buffer, buffer in zip(self._ema_buffers, self._buffers, strict=True):
            ema_buffer.copy_(buffer)
