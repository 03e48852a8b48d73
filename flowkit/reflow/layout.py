"""Names in a pair directory, without torch: shard file names, the manifest, storage dtypes.

Kept apart from the shard reader and writer so that the command-line parser (and anything
that only lists a directory) does not import torch.
"""

from __future__ import annotations

import re

MANIFEST = "manifest.json"
STORAGE_DTYPES = ("float32", "float16", "bfloat16")
SHARD_PATTERN = "pairs-{:05d}.safetensors"
_SHARD_RE = re.compile(r"pairs-(\d{5,})\.safetensors")


def shard_name(index: int) -> str:
    """The file name of shard ``index``: ``pairs-00007.safetensors``."""
    return SHARD_PATTERN.format(index)


def shard_index(name: str) -> int | None:
    """The index of a shard file name as :func:`shard_name` writes it, else None.

    Only the exact canonical spelling counts (``pairs-00007.safetensors``, not
    ``pairs-7.safetensors`` or ``pairs-000007.safetensors``), so no path, separator,
    ``.``/``..`` or absolute name is ever a shard name.
    """
    match = _SHARD_RE.fullmatch(name)
    if match is None:
        return None
    index = int(match.group(1))
    return index if shard_name(index) == name else None
