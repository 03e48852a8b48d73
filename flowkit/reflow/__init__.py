"""Reflow: a teacher's (noise, sample) pairs, generated at scale and read back.

- :func:`load_teacher` turns a flowkit run / pipeline or a diffusers pipeline into an ODE
  map from unit noise to samples; :class:`SolverSpec` says how to integrate it.
- :func:`generate_pairs` writes sharded, checksummed, resumable pair sets (also under
  ``torchrun``); ``flowkit reflow`` is its command.
- :class:`PairDataset` streams stored pairs; :class:`OnlinePairs` makes them on the fly.
"""

from flowkit._lazy import lazy_getattr

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

__getattr__ = lazy_getattr(
    __name__,
    {
        "CorruptShardError": "shards",
        "LoadedTeacher": "teacher",
        "Manifest": "manifest",
        "OnlinePairs": "online",
        "PairDataset": "pair_dataset",
        "ShardRecord": "manifest",
        "SolverSpec": "teacher",
        "generate_pairs": "generate",
        "load_teacher": "teacher",
    },
)
