"""Per-sample Brownian increments that depend on (seed, sample index, step) alone.

A stochastic sampler draws fresh standard normal noise at every step. To keep a sample
bit-identical whether it is drawn in a batch of 1 or of 64, and however a run is split
across processes or restarted, increment ``s`` of sample ``i`` is a pure function of
``(seed, i, s)``: positions ``[s n', (s + 1) n')`` of the sample's increment stream
(:data:`~flowkit.solvers.noise.INCREMENT_STREAM`, keyed apart from the initial noise's
stream), computed for the whole batch in one vectorised expression
(:mod:`flowkit.solvers.noise`). Noise is made on the CPU in float64 and moved to
``device``, so it does not depend on the accelerator either.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from flowkit.solvers.noise import (
    INCREMENT_STREAM,
    even_numel,
    numel,
    sample_keys,
    standard_normal,
)


class PerSampleNoise:
    """Standard normal increments, row ``k`` from the stream of sample ``indices[k]``.

    Args:
        shape: the per-sample shape ``D`` (``x.shape[1:]``).
        indices: the global index of every sample of the batch.
        seed: the run's base seed.
        device, dtype: where and how :meth:`next` returns the noise.

    Example::

        noise = PerSampleNoise(x.shape[1:], range(len(x)), seed=0)
        x = x + step * noise.next()
    """

    def __init__(
        self,
        shape: tuple[int, ...] | torch.Size,
        indices: Iterable[int],
        seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.seed = seed
        self.device = device
        self.dtype = dtype
        self._keys = sample_keys(seed, indices, INCREMENT_STREAM)
        self._numel = numel(self.shape)
        self._stride = even_numel(self.shape)
        self.draws = 0

    def __len__(self) -> int:
        return len(self._keys)

    def next(self) -> Tensor:
        """The next ``(B, *D)`` increment: one fresh standard normal row per sample."""
        start = self.draws * self._stride
        # float32 / float64 noise is made in its dtype (the float64 values rounded once, as
        # the cast would); an odd count drops the last number of every row
        made = {torch.float32: np.float32, torch.float64: np.float64}.get(self.dtype, np.float64)
        normals = standard_normal(self._keys, start, self._stride, made)
        if self._numel != self._stride:
            normals = normals[:, : self._numel].copy()
        out = torch.from_numpy(normals).reshape(len(self._keys), *self.shape)
        self.draws += 1
        return out.to(device=self.device, dtype=self.dtype)
