"""A resumable, rank-aware stream of data indices.

Epoch ``e`` visits the data in the order ``randperm(N)`` drawn from a generator seeded by
``(seed, e)`` alone; rank ``r`` of ``W`` takes every ``W``-th index of it. The position
(epoch, offset) is two integers, so a resumed run continues with exactly the batches an
uninterrupted one would have seen.
"""

from __future__ import annotations

import torch
from torch import Tensor


class IndexStream:
    """Yields batches of indices into a data set of size ``n``."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if n < world_size:
            raise ValueError(f"the data set has {n} items, fewer than the {world_size} processes")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.offset = 0, 0
        self._order: Tensor | None = None

    def _epoch_order(self) -> Tensor:
        if self._order is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._order = torch.randperm(self.n, generator=g)[self.rank :: self.world_size]
        return self._order

    def next_batch(self) -> Tensor:
        """The next ``batch_size`` indices, crossing into the next epoch when needed."""
        parts, needed = [], self.batch_size
        while needed > 0:
            order = self._epoch_order()
            take = order[self.offset : self.offset + needed]
            parts.append(take)
            needed -= len(take)
            self.offset += len(take)
            if self.offset >= len(order):
                self.epoch, self.offset, self._order = self.epoch + 1, 0, None
        return torch.cat(parts)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.offset, self._order = int(state["epoch"]), int(state["offset"]), None
