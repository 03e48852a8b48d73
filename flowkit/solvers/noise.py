"""Initial noise that depends on (seed, sample index) alone.

Sample ``i`` of a run with base seed ``s`` is always drawn from a generator seeded by
``s * 2**32 + i`` (mod 2**63), so results do not depend on the batch size, on how work is
split across processes, or on restarts (the per-seed generators of EDM).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def sample_seed(seed: int, index: int) -> int:
    """The generator seed of sample ``index`` under base seed ``seed``."""
    return (seed * 2**32 + index) % 2**63


def seeded_noise(
    shape: tuple[int, ...],
    indices: Iterable[int],
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``(len(indices), *shape)`` standard normal noise, row ``k`` from ``(seed, indices[k])``."""
    rows = [
        torch.randn(
            shape, generator=torch.Generator().manual_seed(sample_seed(seed, i)), dtype=dtype
        )
        for i in indices
    ]
    return torch.stack(rows) if rows else torch.empty((0, *shape), dtype=dtype)
