"""Reflow: a teacher's (noise, sample) pairs, generated at scale and read back.

- :func:`load_teacher` turns a flowkit run / pipeline or a diffusers pipeline into an ODE
  map from unit noise to samples; :class:`SolverSpec` says how to integrate it.
- :func:`generate_pairs` writes sharded, checksummed, resumable pair sets (also under
  ``torchrun``); ``flowkit reflow`` is its command.
- :class:`PairDataset` streams stored pairs; :class:`OnlinePairs` makes them on the fly.
"""

from flowkit.reflow.generate import generate_pairs
from flowkit.reflow.manifest import Manifest, ShardRecord
from flowkit.reflow.online import OnlinePairs
from flowkit.reflow.pair_dataset import PairDataset
from flowkit.reflow.shards import CorruptShardError
from flowkit.reflow.teacher import LoadedTeacher, SolverSpec, load_teacher

__all__ = [
    "CorruptShardError",
    "LoadedTeacher",
    "Manifest",
    "OnlinePairs",
    "PairDataset",
    "ShardRecord",
    "SolverSpec",
    "generate_pairs",
    "load_teacher",
]
