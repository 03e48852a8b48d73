"""Running observation normalisation, checkpointed with the networks.

Mean and variance of every observation seen so far, merged batch by batch in float64
(Chan et al.'s parallel update): for a batch with count ``m``, mean ``mu_b`` and variance
``var_b``, and ``delta = mu_b - mu``,

    n' = n + m,  mu' = mu + delta m / n',
    var' = (var n + var_b m + delta^2 n m / n') / n'.

The normalised observation is ``clip((s - mu) / sqrt(var + eps), -clip, clip)``. The
statistics are buffers, so a checkpoint of this module restores them exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RunningNorm"]


class RunningNorm(nn.Module):
    """Normalises ``(B, D)`` observations by running statistics (identity until updated
    when ``enabled`` is False)."""

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8, enabled: bool = True):
        super().__init__()
        self.clip, self.eps, self.enabled = clip, eps, enabled
        self.frozen = False  # True: update() is a no-op
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, obs: Tensor) -> None:
        """Merge a batch ``(B, D)`` into the statistics (no-op when disabled or frozen)."""
        if not self.enabled or self.frozen or obs.shape[0] == 0:
            return
        x = obs.to(torch.float64)
        m = float(x.shape[0])
        mean_b, var_b = x.mean(dim=0), x.var(dim=0, unbiased=False)
        n = float(self.count)
        total = n + m
        delta = mean_b - self.mean
        self.mean += delta * m / total
        self.var.copy_((self.var * n + var_b * m + delta.square() * n * m / total) / total)
        self.count.fill_(total)

    def forward(self, obs: Tensor) -> Tensor:
        if not self.enabled:
            return obs.float()
        z = (obs.to(torch.float64) - self.mean) / torch.sqrt(self.var + self.eps)
        return z.clamp(-self.clip, self.clip).float()
