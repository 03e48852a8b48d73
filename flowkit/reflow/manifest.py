"""``DIR/manifest.json``: what a pair set is, how it was made, and its checksums.

The manifest is written twice, always atomically: when generation starts (the plan,
``complete: false``), so a restarted job can check it continues the same work, and when
every shard exists (``complete: true`` with each shard's row range and SHA-256). A data
set only opens complete manifests.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowkit.reflow.shards import shard_name

FORMAT = "flowkit-reflow-pairs/1"
MANIFEST = "manifest.json"
STORAGE_DTYPES = ("float32", "float16", "bfloat16")
# plan keys that must agree for a restarted job to continue existing shards
PLAN_KEYS = (
    "teacher_digest",
    "solver",
    "seed",
    "num",
    "shard_size",
    "batch_size",
    "dtype",
    "sample_shape",
    "num_classes",
    "boundaries",
)


@dataclass
class ShardRecord:
    """One shard: its file, the first sample index it holds, its row count, its SHA-256."""

    file: str
    start: int
    count: int
    sha256: str


@dataclass
class Manifest:
    """A reflow pair set.

    Attributes:
        teacher: the teacher as given (a run, pipeline or diffusers directory).
        teacher_digest: SHA-256 over the teacher's weights (names, dtypes, bytes).
        solver: ``{"method", "nfe", "grid", "rtol", "atol"}`` used to integrate the ODE.
        seed: base seed; sample ``i`` starts from noise seeded by ``(seed, i)`` alone.
        num, shard_size, batch_size: pair count, rows per shard, rows per teacher batch
            (batches never straddle shards, so the split is fixed by these two numbers).
        dtype: storage dtype of ``x0`` / ``x1``.
        sample_shape: the shape of one sample; num_classes: labels are stored as ``cond``
            when the teacher is class-conditional (None otherwise).
        boundaries: the times ``[0, b_1, ..., b_K]`` at which the teacher's states are stored
            as ``xb`` ``(N, K + 1, *sample_shape)`` (phased pairs), or None.
        nfe_per_pair: the teacher's measured evaluations per sample (mean over batches).
        shards: one :class:`ShardRecord` per file, filled in when complete.
    """

    teacher: str
    teacher_digest: str
    solver: dict[str, Any]
    seed: int
    num: int
    shard_size: int
    batch_size: int
    dtype: str
    sample_shape: list[int]
    num_classes: int | None = None
    boundaries: list[float] | None = None
    nfe_per_pair: float | None = None
    complete: bool = False
    shards: list[ShardRecord] = field(default_factory=list)
    format: str = FORMAT

    @property
    def num_shards(self) -> int:
        return -(-self.num // self.shard_size)

    def shard_range(self, index: int) -> tuple[int, int]:
        """Sample indices ``[start, stop)`` of shard ``index``."""
        start = index * self.shard_size
        return start, min(start + self.shard_size, self.num)

    def shard_file(self, index: int) -> str:
        return shard_name(index)

    def plan(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: data[key] for key in PLAN_KEYS}

    def save(self, directory: Path) -> None:
        """Write ``directory/manifest.json`` through a temporary file."""
        path = directory / MANIFEST
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        """Read ``directory/manifest.json``.

        Raises:
            FileNotFoundError: there is no manifest (not a pair directory).
            ValueError: the manifest is not one this version reads.
        """
        path = Path(directory) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(
                f"{str(directory)!r} has no {MANIFEST}: not a pair directory written by "
                "`flowkit reflow`"
            )
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(
                f"{str(path)!r} has format {data.get('format')!r}; this flowkit reads {FORMAT!r}"
            )
        data["shards"] = [ShardRecord(**record) for record in data.get("shards", [])]
        return cls(**data)


def plan_differences(saved: Manifest, wanted: Manifest) -> list[str]:
    """The plan keys on which a saved manifest and a new request disagree."""
    a, b = saved.plan(), wanted.plan()
    return [f"{key} ({a[key]!r} saved, {b[key]!r} now)" for key in PLAN_KEYS if a[key] != b[key]]
