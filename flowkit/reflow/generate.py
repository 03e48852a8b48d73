"""Generate a teacher's (noise, sample) pairs: sharded, resumable, split across processes.

Layout: pair ``i`` lives in shard ``i // shard_size``; inside a shard the teacher runs on
consecutive batches of ``batch_size`` rows. Pair ``i``'s noise (and label) come from a
generator seeded by ``(seed, i)`` alone, and the batches are fixed by ``(shard_size,
batch_size)``, so the data set is the same whether one process writes it or several
(process ``r`` of ``W`` writes shards ``r, r + W, ...``), and whether or not it was
interrupted: a shard is written to a temporary file and renamed, so after a kill every
``pairs-*.safetensors`` present is whole, and a restart writes exactly the missing ones.

Every shard records its provenance (the plan and its row range, no paths or ranks, so the
bytes stay identical however the work was split). A restart -- with or without
``manifest.json``, which a user may have deleted -- first checks every shard already in
the directory against the plan, and refuses to continue over shards of another teacher,
seed, solver or size: otherwise one directory would silently hold two teachers' pairs
under one manifest.

With ``boundaries`` ``[0, b_1, ..., b_K]`` (phased Rectified Diffusion) the teacher is run
phase by phase (:meth:`~flowkit.reflow.LoadedTeacher.integrate_through`) and each shard also
holds ``xb`` ``(n, K + 1, *D)``, its state at every boundary.

Note on adaptive solvers: their step sizes are chosen per batch, so changing
``batch_size`` changes pairs within the solver tolerance; it is part of the plan that a
restart must match.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from flowkit.distributed import barrier
from flowkit.reflow.layout import MANIFEST, STORAGE_DTYPES
from flowkit.reflow.manifest import (
    Manifest,
    ShardRecord,
    plan_differences,
    provenance_differences,
)
from flowkit.reflow.shards import MappedShard, existing_shards, file_sha256, write_shard
from flowkit.reflow.teacher import LoadedTeacher, SolverSpec


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _shard_differences(
    teacher: LoadedTeacher, manifest: Manifest, index: int, path: Path, complete: bool
) -> list[str]:
    """How the existing shard ``path`` (number ``index``) differs from ``manifest``'s plan.

    Checked: the index lies in the plan, the recorded provenance equals
    :meth:`Manifest.provenance`, the row count, and -- when the run will write more shards
    -- that the shard's first stored noise row is the noise this flowkit draws for that pair
    (a changed noise derivation would otherwise mix two noise streams under one seed). In a
    ``complete`` set nothing will be written, so shards from before provenance was recorded
    are admitted there, as :class:`~flowkit.reflow.PairDataset` admits them.
    """
    if index >= manifest.num_shards:
        return [f"index: shard {index}, but this plan has {manifest.num_shards} shard(s)"]
    shard = MappedShard(path)
    legacy = not isinstance(shard.info.get("plan"), dict)
    differences = [] if legacy and complete else provenance_differences(manifest, index, shard.info)
    start, stop = manifest.shard_range(index)
    if len(shard) != stop - start:
        differences.append(f"rows: {len(shard)} in the shard, {stop - start} in the plan")
    if differences or complete:
        return differences
    expected = teacher.noise([start], manifest.seed).cpu().to(getattr(torch, manifest.dtype))
    if not torch.equal(shard.rows("x0", np.array([0])), expected):
        differences.append(
            f"x0: the stored noise of pair {start} is not the noise this flowkit draws for "
            f"(seed={manifest.seed}, index={start}) (written by a flowkit whose noise "
            "derivation differs)"
        )
    return differences


def _check_existing_shards(
    teacher: LoadedTeacher, manifest: Manifest, out: Path, complete: bool
) -> set[int]:
    """Check every shard already in ``out`` against the plan; return their indices.

    Raises:
        ValueError: a shard differs; the message names it, each differing field with the
            shard's and the plan's value, any other differing shards, and the fix.
    """
    present = existing_shards(out)
    problems = {
        path: differences
        for index, path in present.items()
        if (differences := _shard_differences(teacher, manifest, index, path, complete))
    }
    if problems:
        (path, differences), *others = problems.items()
        more = ""
        if others:
            names = ", ".join(other.name for other, _ in others[:5])
            more = f" {len(others)} more shard(s) differ too: {names}{'...' * (len(others) > 5)}."
        raise ValueError(
            f"shard {str(path)!r} was not written by this run's plan: {'; '.join(differences)}."
            f"{more} Pairs of different plans must not share a directory: use a new --out "
            f"directory, or delete {path.name} (and any other differing shard) to have it "
            "regenerated with the current settings."
        )
    return set(present)


def _check_arguments(num: int, batch_size: int, shard_size: int, dtype: str) -> None:
    if num < 1:
        raise ValueError(f"num={num}: the number of pairs must be >= 1")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size={batch_size} and shard_size={shard_size} must be >= 1")
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype={dtype!r}; expected one of {list(STORAGE_DTYPES)}")


def generate_pairs(
    teacher: LoadedTeacher,
    num: int,
    out: str | os.PathLike,
    solver: SolverSpec | None = None,
    *,
    seed: int = 0,
    batch_size: int = 256,
    shard_size: int = 8192,
    dtype: str = "float32",
    boundaries: Sequence[float] | None = None,
    progress: bool = True,
) -> Manifest:
    """Write ``num`` pairs of ``teacher`` to ``out`` (or finish a partial run there).

    Each process of a ``torchrun`` group calls this with the same arguments; the teacher
    should already sit on the process's device. ``boundaries`` (phased pairs) adds the
    teacher's states there as ``xb``. Returns the complete manifest.

    Raises:
        ValueError: bad sizes or boundaries, or ``out`` holds pairs of a different plan: its
            manifest, or any shard, with or without a manifest (the message names the
            shard and each differing setting with both values), or a manifest naming shard
            files other than ``pairs-NNNNN.safetensors``.
    """
    _check_arguments(num, batch_size, shard_size, dtype)
    solver = solver or SolverSpec()
    if boundaries is not None:
        boundaries = teacher.phase_plan(solver, boundaries)[0]
    out = Path(out)
    rank, world = _dist()
    manifest = Manifest(
        teacher=teacher.source,
        teacher_digest=teacher.digest(),
        solver=solver.as_dict(),
        seed=seed,
        num=num,
        shard_size=shard_size,
        batch_size=batch_size,
        dtype=dtype,
        sample_shape=list(teacher.sample_shape),
        num_classes=teacher.num_classes,
        boundaries=boundaries,
    )
    saved = Manifest.load(out) if (out / MANIFEST).is_file() else None
    if saved is not None:
        differences = plan_differences(saved, manifest)
        if differences:
            raise ValueError(
                f"{str(out)!r} already holds pairs of another plan: {'; '.join(differences)}. "
                "Use another --out, or the same settings to resume."
            )
    # A complete set missing a shard (deleted because it was corrupt) is finished like an
    # interrupted one. Every process checks (read-only, before any barrier), so all of them
    # raise together.
    complete = (
        saved is not None
        and saved.complete
        and all((out / manifest.shard_file(k)).is_file() for k in range(manifest.num_shards))
    )
    existing = _check_existing_shards(teacher, manifest, out, complete)
    if complete and saved is not None:
        return saved
    barrier()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        manifest.save(out)
    barrier()

    mine = list(range(rank, manifest.num_shards, world))
    todo = [k for k in mine if k not in existing]
    _write_shards(teacher, manifest, out, solver, todo, progress and rank == 0)
    barrier()
    if rank == 0:
        manifest.nfe_per_pair = _mean_nfe(out, manifest)
        manifest.shards = [
            ShardRecord(
                file=manifest.shard_file(k),
                start=manifest.shard_range(k)[0],
                count=manifest.shard_range(k)[1] - manifest.shard_range(k)[0],
                sha256=file_sha256(out / manifest.shard_file(k)),
            )
            for k in range(manifest.num_shards)
        ]
        manifest.complete = True
        manifest.save(out)
    barrier()
    return Manifest.load(out)


def _mean_nfe(out: Path, manifest: Manifest) -> float | None:
    """Mean teacher evaluations per batch (= per pair's trajectory), from every shard's
    recorded count."""
    values = []
    for k in range(manifest.num_shards):
        info = MappedShard(out / manifest.shard_file(k)).info
        if "nfe_per_batch" in info:
            values.append(float(info["nfe_per_batch"]))
    return round(sum(values) / len(values), 3) if values else None


def _write_shards(
    teacher: LoadedTeacher,
    manifest: Manifest,
    out: Path,
    solver: SolverSpec,
    shards: list[int],
    show: bool,
) -> None:
    storage = getattr(torch, manifest.dtype)
    total = sum(manifest.shard_range(k)[1] - manifest.shard_range(k)[0] for k in shards)
    bar = tqdm(total=total, unit="pair", desc="reflow pairs", dynamic_ncols=True, disable=not show)
    for k in shards:
        start, stop = manifest.shard_range(k)
        parts: dict[str, list[torch.Tensor]] = {"x0": [], "x1": [], "cond": [], "xb": []}
        shard_nfe = 0
        for lo in range(start, stop, manifest.batch_size):
            indices = range(lo, min(lo + manifest.batch_size, stop))
            x0 = teacher.noise(indices, manifest.seed)
            labels = teacher.labels(indices, manifest.seed)
            if manifest.boundaries is None:
                x1, nfe = teacher.integrate(x0, labels, solver)
            else:
                states, nfe = teacher.integrate_through(x0, labels, solver, manifest.boundaries)
                x1 = states[:, -1]
                parts["xb"].append(states.cpu().to(storage))
            parts["x0"].append(x0.to(storage))
            parts["x1"].append(x1.cpu().to(storage))
            if labels is not None:
                parts["cond"].append(labels)
            shard_nfe += nfe
            bar.update(len(indices))  # tqdm shows pairs/s and the ETA
            bar.set_postfix(nfe_per_batch=nfe)
        tensors = {key: torch.cat(value) for key, value in parts.items() if value}
        n_batches = -(-(stop - start) // manifest.batch_size)
        info = {**manifest.provenance(k), "nfe_per_batch": shard_nfe / n_batches}
        write_shard(out / manifest.shard_file(k), tensors, info)
    bar.close()
