"""A data set over reflow pair shards: memory-mapped, shuffled across shards, verified.

Indices are global (pair ``i`` lives in shard ``i // shard_size``), so the trainer's
index stream shuffles over all pairs at once, and a batch gathers its rows from each
shard's memory map: the pairs are never all in RAM. Opening checks the manifest: it must
be complete and name only ``pairs-NNNNN.safetensors`` files inside the directory; every
shard must exist with its recorded size, tensors and row count, the provenance it records
(teacher digest, solver, seed, sizes, dtype, row range) must be the manifest's plan, and
(by default) its SHA-256 must match; any failure names the shard. Shards written before
flowkit recorded provenance carry none; the manifest's checksum is then all that vouches
for them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowkit.data.batch import Batch
from flowkit.reflow.manifest import Manifest, ShardRecord, provenance_differences
from flowkit.reflow.shards import CorruptShardError, MappedShard, file_sha256

VERIFY_MODES = ("checksum", "header")


class PairDataset:
    """Pairs ``(x0, x1[, cond])`` written by :func:`flowkit.reflow.generate_pairs`.

    Args:
        root: the pair directory (``manifest.json`` + ``pairs-*.safetensors``).
        verify: ``"checksum"`` (default) hashes every shard against the manifest;
            ``"header"`` checks sizes, tensors and row counts only (fast, for huge sets
            already verified once).

    ``batch(indices)`` returns a :class:`~flowkit.data.batch.Batch` of float32
    ``x1`` ``(B, *sample_shape)``, ``x0`` (the noise each ``x1`` came from), int64
    ``labels`` (or None) and, for phased pairs (``manifest.boundaries``), ``xb``
    ``(B, K + 1, *sample_shape)``: the teacher's states at the boundaries.
    """

    def __init__(self, root: str | os.PathLike, verify: str = "checksum") -> None:
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify={verify!r}; expected one of {list(VERIFY_MODES)}")
        self.root = Path(root)
        self.manifest = Manifest.load(self.root)
        if not self.manifest.complete:
            raise ValueError(
                f"pairs in {str(self.root)!r} are incomplete (generation was interrupted); "
                "run the same `flowkit reflow` command again to finish them"
            )
        self.shards = [self._open(k, rec, verify) for k, rec in enumerate(self.manifest.shards)]
        if sum(len(shard) for shard in self.shards) != self.manifest.num:
            raise CorruptShardError(
                f"shards in {str(self.root)!r} hold {sum(len(s) for s in self.shards)} pairs, "
                f"the manifest says {self.manifest.num}"
            )
        self.sample_shape = tuple(self.manifest.sample_shape)
        self.num_classes = self.manifest.num_classes

    def _open(self, index: int, record: ShardRecord, verify: str) -> MappedShard:
        """Map shard ``index`` after checking it against its record and the plan."""
        path = self.root / record.file  # a plain pairs-NNNNN name: Manifest.load checked it
        if not path.is_file():
            raise CorruptShardError(f"shard {str(path)!r} listed in the manifest is missing")
        if verify == "checksum" and file_sha256(path) != record.sha256:
            raise CorruptShardError(
                f"shard {str(path)!r} does not match its checksum in the manifest (corrupted "
                "or replaced); delete it and rerun the `flowkit reflow` command to rewrite it"
            )
        shard = MappedShard(path)
        if len(shard) != record.count:
            raise CorruptShardError(
                f"shard {str(path)!r} holds {len(shard)} pairs, the manifest says {record.count}"
            )
        start, stop = self.manifest.shard_range(index)
        if (record.start, record.count) != (start, stop - start):
            raise CorruptShardError(
                f"{str(self.root / 'manifest.json')!r}: shard entry {index} ({record.file}) "
                f"records rows [{record.start}, {record.start + record.count}), the plan puts "
                f"rows [{start}, {stop}) there; regenerate the pairs into a new --out directory"
            )
        if isinstance(shard.info.get("plan"), dict):  # absent: written before provenance
            differences = provenance_differences(self.manifest, index, shard.info)
            if differences:
                raise CorruptShardError(
                    f"shard {str(path)!r} was not written by the plan in the manifest: "
                    f"{'; '.join(differences)}. The directory mixes pairs of different plans: "
                    "delete the shard and rerun the `flowkit reflow` command of the manifest "
                    "to regenerate it, or generate the pairs into a new --out directory"
                )
        for key in ("x0", "x1"):
            if list(shard.shape(key)) != list(self.manifest.sample_shape):
                raise CorruptShardError(
                    f"shard {str(path)!r}: {key} has sample shape {shard.shape(key)}, the "
                    f"manifest says {self.manifest.sample_shape}"
                )
        if self.manifest.boundaries is not None:
            expected = [len(self.manifest.boundaries), *self.manifest.sample_shape]
            if "xb" not in shard.arrays or list(shard.shape("xb")) != expected:
                raise CorruptShardError(
                    f"shard {str(path)!r}: phased pairs need xb of sample shape {expected}"
                )
        return shard

    def __len__(self) -> int:
        return self.manifest.num

    def batch(self, indices: Tensor, generator: torch.Generator | None = None) -> Batch:
        """The pairs at global ``indices`` ``(B,)``, in that order (``generator`` unused:
        pairs take no augmentation, which would break the coupling)."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= len(self)):
            raise IndexError(f"pair indices must lie in [0, {len(self)})")
        shard_of = (indices // self.manifest.shard_size).numpy()
        rows = (indices % self.manifest.shard_size).numpy()
        shape = (len(indices), *self.sample_shape)
        x0, x1 = torch.empty(shape), torch.empty(shape)
        labels = torch.empty(len(indices), dtype=torch.long) if self.num_classes else None
        phases = self.manifest.boundaries
        xb = torch.empty(len(indices), len(phases), *shape[1:]) if phases is not None else None
        for k in np.unique(shard_of):
            where = np.nonzero(shard_of == k)[0]
            order = np.argsort(rows[where], kind="stable")  # sequential reads within a shard
            sel, shard = where[order], self.shards[int(k)]
            x0[sel] = shard.rows("x0", rows[sel]).float()
            x1[sel] = shard.rows("x1", rows[sel]).float()
            if labels is not None:
                labels[sel] = shard.rows("cond", rows[sel])
            if xb is not None:
                xb[sel] = shard.rows("xb", rows[sel]).float()
        return Batch(x1=x1, labels=labels, x0=x0, xb=xb)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """``(x0, x1)`` of pair ``index``."""
        batch = self.batch(torch.tensor([index]))
        return batch.x0[0], batch.x1[0]
