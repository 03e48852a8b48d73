"""Pair shards on disk: atomic safetensors writes, memory-mapped reads, checksums.

A shard ``pairs-00007.safetensors`` holds the tensors ``x0`` (noise), ``x1`` (the
teacher's sample), for class-conditional teachers ``cond`` (int64 labels) and, for phased
pairs, ``xb`` (the teacher's states at the phase boundaries, ``(n, K + 1, *D)``), all with
the same first dimension. Reads never load a whole shard: the safetensors header gives
each tensor's byte range, and :class:`MappedShard` maps that range with ``numpy.memmap``
so a batch touches only the rows it gathers (bfloat16 is mapped as raw 16-bit words
and reinterpreted by torch).

Each shard carries its own provenance in its metadata (see
:meth:`flowkit.reflow.Manifest.provenance`: the plan it was written under and its row
range), so a shard can be checked against a plan even when ``manifest.json`` is gone.
Shard files are named ``pairs-NNNNN.safetensors`` and nothing else: :func:`shard_index`
is the one test of a name, and it admits no separators, so a name never leaves its
directory.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowkit.files import save_tensors
from flowkit.reflow.layout import shard_index

PAIR_KEYS = ("x0", "x1")

# safetensors dtype tag -> (numpy dtype to map the bytes with, torch dtype they hold)
_DTYPES: dict[str, tuple[np.dtype, torch.dtype]] = {
    "F32": (np.dtype("<f4"), torch.float32),
    "F16": (np.dtype("<f2"), torch.float16),
    "BF16": (np.dtype("<u2"), torch.bfloat16),
    "F64": (np.dtype("<f8"), torch.float64),
    "I64": (np.dtype("<i8"), torch.int64),
}


class CorruptShardError(ValueError):
    """A shard that is missing, truncated, or differs from its manifest."""


def existing_shards(directory: Path) -> dict[int, Path]:
    """The shard files present in ``directory``, by index (files with other names,
    such as a ``.tmp`` a killed writer left behind, are not shards)."""
    if not directory.is_dir():
        return {}
    found = {}
    for path in directory.iterdir():
        index = shard_index(path.name)
        if index is not None and path.is_file():
            found[index] = path
    return dict(sorted(found.items()))


def write_shard(path: Path, tensors: dict[str, Tensor], info: dict) -> None:
    """Write ``tensors`` to ``path`` through a temporary file renamed into place.

    ``info`` (the shard's provenance and statistics) is stored as one JSON string with
    sorted keys under the metadata key ``"shard"``: safetensors writes several metadata
    keys in no fixed order, which would make the bytes (and the checksum) of identical
    shards differ.
    """
    metadata = {"shard": json.dumps(info, sort_keys=True)}
    save_tensors({k: v.contiguous().cpu() for k, v in tensors.items()}, path, metadata=metadata)


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_header(path: Path) -> tuple[dict, int]:
    """The safetensors JSON header of ``path`` and the byte offset where data begins.

    Raises:
        CorruptShardError: the file is too short or its header is not valid JSON.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise CorruptShardError(f"shard {str(path)!r} is truncated ({size} bytes)")
        (length,) = struct.unpack("<Q", raw)
        if length > size - 8:
            raise CorruptShardError(f"shard {str(path)!r} has a header longer than the file")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CorruptShardError(f"shard {str(path)!r} has an unreadable header") from error
    return header, 8 + length


class MappedShard:
    """Rows of one shard, memory-mapped: ``shard.rows("x1", indices) -> Tensor``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        header, start = read_header(path)
        metadata = header.pop("__metadata__", {}) or {}
        try:
            self.info: dict = json.loads(metadata.get("shard", "{}"))
        except json.JSONDecodeError as error:
            raise CorruptShardError(f"shard {str(path)!r} has unreadable metadata") from error
        if not isinstance(self.info, dict):
            raise CorruptShardError(f"shard {str(path)!r} has metadata that is not an object")
        self.arrays: dict[str, tuple[np.memmap, torch.dtype]] = {}
        file_size = path.stat().st_size
        for name, info in header.items():
            if info["dtype"] not in _DTYPES:
                raise CorruptShardError(
                    f"shard {str(path)!r}: tensor {name!r} has unsupported dtype {info['dtype']}"
                )
            np_dtype, torch_dtype = _DTYPES[info["dtype"]]
            begin, end = info["data_offsets"]
            shape = tuple(info["shape"])
            if start + end > file_size or end - begin != np_dtype.itemsize * int(np.prod(shape)):
                raise CorruptShardError(
                    f"shard {str(path)!r}: tensor {name!r} does not fit the file (truncated?)"
                )
            array = np.memmap(path, dtype=np_dtype, mode="r", offset=start + begin, shape=shape)
            self.arrays[name] = (array, torch_dtype)
        lengths = {name: array.shape[0] for name, (array, _) in self.arrays.items()}
        if not set(PAIR_KEYS) <= set(lengths) or len(set(lengths.values())) != 1:
            raise CorruptShardError(
                f"shard {str(path)!r} must hold x0 and x1 with one length each, got {lengths}"
            )
        self.length = lengths["x0"]

    def __len__(self) -> int:
        return self.length

    def keys(self) -> list[str]:
        return list(self.arrays)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.arrays[name][0].shape[1:])

    def dtype(self, name: str) -> torch.dtype:
        return self.arrays[name][1]

    def rows(self, name: str, indices: np.ndarray) -> Tensor:
        """Rows ``indices`` of tensor ``name`` (a copy, in the stored dtype)."""
        array, torch_dtype = self.arrays[name]
        out = torch.from_numpy(np.ascontiguousarray(array[indices]))
        return out.view(torch_dtype) if torch_dtype == torch.bfloat16 else out
