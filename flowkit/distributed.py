"""Process-group setup for data-parallel training under ``torchrun``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, and the device it should use."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> this process's CUDA device when there is one, else CPU."""
    if name == "auto":
        return (
            torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        )
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available; use 'cpu' or 'auto'")
    return device


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the process group when launched by ``torchrun`` (NCCL on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size == 1:
        return DistInfo(device=device)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown_and_exit(code: int = 0) -> None:
    """End a ``torchrun`` worker cleanly.

    A rank that returns normally sometimes aborts at interpreter exit under gloo
    (``terminate called without an active exception``); leaving through
    ``barrier(); destroy_process_group(); os._exit`` avoids it.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def cpu_threads(requested: int | None = None) -> tuple[int, str]:
    """The CPU threads this process should use, and why.

    ``requested`` wins; then ``OMP_NUM_THREADS`` when the user set it; else half the cores
    this process may run on, shared among the local ``torchrun`` processes, at least 1.
    Small networks gain little from more threads, and on a machine shared with other work
    OpenMP threads that oversubscribe the cores make every step many times slower (a digits
    UNet step took 15-26 s with 2 threads on a loaded 2-core machine, 1.2-2.3 s with 1).
    """
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be >= 1, got {requested}")
        return requested, "as requested"
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "from OMP_NUM_THREADS"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, (cores or 1) // (2 * local)), f"half of {cores} cores over {local} process(es)"
