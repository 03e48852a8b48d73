"""``DIR/manifest.json``: what a pair set is, how it was made, and its checksums.

The manifest is written twice, always atomically: when generation starts (the plan,
``complete: false``), so a restarted job can check it continues the same work, and when
every shard exists (``complete: true`` with each shard's row range and SHA-256). A data
set only opens complete manifests.

Shard entries are confined to the pair directory: entry ``k`` must be the plain file name
``pairs-0000k.safetensors`` (:func:`flowkit.reflow.layout.shard_name`), so an edited or
hostile manifest can name no other file (``../x``, ``/etc/passwd``).

Each shard also records its own provenance (:meth:`Manifest.provenance`: the plan and its
row range), and :func:`provenance_differences` compares it with a plan: the manifest can be
lost or rewritten, the shard's record travels with its bytes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowkit.files import read_json, write_json
from flowkit.reflow.layout import MANIFEST, shard_index, shard_name

FORMAT = "flowkit-reflow-pairs/1"
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
        """The settings that decide every pair's bytes (:data:`PLAN_KEYS`)."""
        data = asdict(self)
        return {key: data[key] for key in PLAN_KEYS}

    def provenance(self, index: int) -> dict[str, Any]:
        """What shard ``index`` records about its making: the plan and its row range.

        It depends on the plan and the index alone (no paths, times or process ranks), so
        one process and several write byte-identical shards.
        """
        start, stop = self.shard_range(index)
        return {"plan": self.plan(), "start": start, "count": stop - start}

    def save(self, directory: Path) -> None:
        """Write ``directory/manifest.json`` through a temporary file."""
        write_json(directory / MANIFEST, asdict(self))

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
        data = read_json(path, "manifest")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{str(path)!r} has format {found!r}; this flowkit reads {FORMAT!r}")
        data["shards"] = [ShardRecord(**record) for record in data.get("shards", [])]
        check_shard_files(path, data["shards"])
        return cls(**data)


def check_shard_files(path: Path, records: list[ShardRecord]) -> None:
    """Refuse shard entries that are not ``pairs-0000k.safetensors`` for entry ``k``.

    A manifest only ever names files its writer made, in order, inside its own directory;
    anything else (a path, ``..``, an absolute name, another order) is an edited or foreign
    manifest, and following it would read files outside the pair directory.

    Raises:
        ValueError: naming the manifest, the entry and the name expected there.
    """
    for k, record in enumerate(records):
        if not isinstance(record.file, str) or shard_index(record.file) != k:
            raise ValueError(
                f"{str(path)!r}: shard entry {k} names file {record.file!r}; expected the plain "
                f"file name {shard_name(k)!r} inside the pair directory (shard files are "
                "pairs-NNNNN.safetensors, numbered in order). The manifest was edited or is "
                "not from `flowkit reflow`: regenerate the pairs into a new --out directory"
            )


def plan_differences(saved: Manifest, wanted: Manifest) -> list[str]:
    """The plan keys on which a saved manifest and a new request disagree."""
    a, b = saved.plan(), wanted.plan()
    return [f"{key} ({a[key]!r} saved, {b[key]!r} now)" for key in PLAN_KEYS if a[key] != b[key]]


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"plan": {"solver": {"nfe": 8}}}`` -> ``{"solver.nfe": 8}`` (the ``plan.`` prefix
    dropped: plan keys are the names users know)."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = key if prefix in ("", "plan.") else prefix + key
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def provenance_differences(manifest: Manifest, index: int, info: dict[str, Any]) -> list[str]:
    """How shard ``index``'s recorded ``info`` differs from ``manifest.provenance(index)``,
    one ``"field: X in the shard, Y in the plan"`` per differing field (solver settings as
    ``solver.method`` etc.); empty when it matches. A shard without a recorded plan (written
    before flowkit recorded provenance) gives one ``provenance`` entry."""
    if not isinstance(info.get("plan"), dict):
        return ["provenance: none recorded in the shard (written by an older flowkit)"]
    wanted = _flatten(json.loads(json.dumps(manifest.provenance(index))))  # as stored
    found = _flatten({key: info.get(key) for key in ("plan", "start", "count")})
    keys = list(wanted) + [key for key in found if key not in wanted]
    return [
        f"{key}: {found.get(key)!r} in the shard, {wanted.get(key)!r} in the plan"
        for key in keys
        if found.get(key) != wanted.get(key)
    ]
