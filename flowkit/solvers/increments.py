"""Per-sample Brownian increments that depend on (seed, sample index) alone.

A stochastic sampler draws fresh standard normal noise at every step. To keep a sample
bit-identical whether it is drawn in a batch of 1 or of 64, and however a run is split
across processes or restarted, every row of that noise comes from the sample's own
``torch.Generator`` (the per-seed generators of EDM), never from a batch-wide one.

Seed stream. The initial noise of sample ``i`` uses ``sample_seed(seed, i)``
(:mod:`flowkit.solvers.noise`). The increments use :func:`increment_seed`, the
splitmix64 hash of ``sample_seed(seed, i)`` xor a stream tag: a different, well mixed
stream, so the increments are never a copy of the initial noise ``x0`` (nor of the
initial noise of any other (seed, index) pair with a simple relation to this one, as a
plain xor with a constant would give).

Blocks. Drawing one row per sample per step costs a Python call per sample per step;
instead each generator draws a block of ``block`` rows at a time and hands them out in
order. ``block`` depends only on the per-sample shape (about ``1024`` numbers per
sample per block, between 1 and 64 rows), never on the batch, so the stream of
increments of a sample is a fixed function of ``(seed, index, shape, dtype)``: the
``k``-th increment is the same whatever the batch size or the number of steps.
Noise is drawn on the CPU (as :func:`~flowkit.solvers.noise.seeded_noise` is) and moved
to ``device``, so it also does not depend on the accelerator.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from flowkit.solvers.noise import sample_seed

_MASK64 = 2**64 - 1
INCREMENT_STREAM = 0x5DEECE66D
"""The tag that separates the increment stream from the initial-noise stream."""


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def increment_seed(seed: int, index: int) -> int:
    """The generator seed of the Brownian increments of sample ``index``."""
    return _splitmix64(sample_seed(seed, index) ^ INCREMENT_STREAM) % 2**63


def default_block(shape: tuple[int, ...]) -> int:
    """Rows drawn per generator call: about 1024 numbers, between 1 and 64 rows."""
    numel = 1
    for size in shape:
        numel *= size
    return max(1, min(64, 1024 // max(numel, 1)))


class PerSampleNoise:
    """Standard normal increments, row ``k`` from the generator of sample ``indices[k]``.

    Args:
        shape: the per-sample shape ``D`` (``x.shape[1:]``).
        indices: the global index of every sample of the batch.
        seed: the run's base seed.
        device, dtype: where and how :meth:`next` returns the noise (drawn on the CPU in
            float64 for float64, else in float32, then cast and moved).

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
        self.shape = tuple(shape)
        self.indices = [int(i) for i in indices]
        self.seed = seed
        self.device = device
        self.dtype = dtype
        self.block = default_block(self.shape)
        self._draw_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        self._generators = [
            torch.Generator().manual_seed(increment_seed(seed, i)) for i in self.indices
        ]
        self._buffer: Tensor | None = None
        self._used = self.block
        self.draws = 0

    def __len__(self) -> int:
        return len(self.indices)

    def _refill(self) -> None:
        size = (self.block, *self.shape)
        rows = [torch.randn(size, generator=g, dtype=self._draw_dtype) for g in self._generators]
        if rows:
            buffer = torch.stack(rows, dim=1)
        else:
            buffer = torch.empty((self.block, 0, *self.shape), dtype=self._draw_dtype)
        self._buffer = buffer.to(device=self.device, dtype=self.dtype)
        self._used = 0

    def next(self) -> Tensor:
        """The next ``(B, *D)`` increment: one fresh standard normal row per sample."""
        if self._used == self.block:
            self._refill()
        assert self._buffer is not None
        out = self._buffer[self._used]
        self._used += 1
        self.draws += 1
        return out
