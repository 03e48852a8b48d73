"""Worker for the two-process test: each rank folds in its share, all-reduces, saves.

    python -m torch.distributed.run --standalone --nproc_per_node=2 stats_worker.py OUT_DIR

The data is ``data(seed)`` below, the same in the test. Rank 0 holds rows ``[0, 70)`` and
rank 1 rows ``[70, 200)`` (unequal shares, several batches); in a second case rank 1 holds
nothing at all.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from flowkit.distributed import init_distributed, shutdown_and_exit
from flowkit.evaluation.stats import FeatureStats

SPLIT, TOTAL, DIM = 70, 200, 6


def data(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(DIM, DIM, generator=g, dtype=torch.float64)
    return torch.randn(TOTAL, DIM, generator=g, dtype=torch.float64) @ mix + 5.0


if __name__ == "__main__":
    out = Path(sys.argv[1])
    init_distributed("cpu")
    rank = dist.get_rank()
    x = data()
    mine = x[:SPLIT] if rank == 0 else x[SPLIT:]
    unequal = FeatureStats(DIM, extractor="toy")
    for batch in mine.split(32):
        unequal.update(batch)
    unequal.all_reduce()
    unequal.save(out / f"unequal-rank{rank}.npz")
    lonely = FeatureStats(DIM, extractor="toy")
    if rank == 0:
        lonely.update(x)
    lonely.all_reduce()
    lonely.save(out / f"lonely-rank{rank}.npz")
    shutdown_and_exit(0)
