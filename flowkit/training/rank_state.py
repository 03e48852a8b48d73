"""Each process's share of a checkpoint: its random-number-generator states, its data
position and its logging window, gathered to rank 0 when saving and handed back to each
rank when resuming. Every loop built on the trainer's parts (training, distillation)
checkpoints the same way, so a resumed run replays exactly what an uninterrupted one draws."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from flowkit.distributed import DistInfo
from flowkit.training.checkpoint import decode_rng, encode_rng
from flowkit.training.config import ConfigError


def capture_rank_state(
    noise: torch.Generator, batches: Any, dist: DistInfo, log: dict[str, Any]
) -> dict[str, Any]:
    """This rank's state: the loop's noise generator, torch's global generator (and CUDA's),
    the batch source's position and the logging window ``log``."""
    state = {
        "noise": encode_rng(noise.get_state()),
        "torch": encode_rng(torch.get_rng_state()),
        "batches": batches.state(),
        "log": log,
    }
    if dist.device.type == "cuda":
        state["cuda"] = encode_rng(torch.cuda.get_rng_state(dist.device))
    return state


def gather_rank_states(state: dict[str, Any], dist: DistInfo) -> list[dict[str, Any]]:
    """Every rank's state, in rank order (a collective: every rank must call it)."""
    if not dist.enabled:
        return [state]
    ranks: list[Any] = [None] * dist.world_size
    torch.distributed.all_gather_object(ranks, state)
    return ranks


def restore_rank_state(
    ranks: list[dict[str, Any]],
    dist: DistInfo,
    noise: torch.Generator,
    batches: Any,
    checkpoint: Path,
) -> dict[str, Any]:
    """Put this rank's generators and data position back; return its state (for the loop's
    own logging window).

    Raises:
        ConfigError: the checkpoint was written by another number of processes.
    """
    if len(ranks) != dist.world_size:
        raise ConfigError(
            f"checkpoint {str(checkpoint)!r} was written by {len(ranks)} processes; resume it "
            f"with the same number (now {dist.world_size})"
        )
    mine = ranks[dist.rank]
    noise.set_state(decode_rng(mine["noise"]).to(noise.get_state().device))
    torch.set_rng_state(decode_rng(mine["torch"]))
    batches.load_state(mine["batches"])
    if "cuda" in mine and dist.device.type == "cuda":
        torch.cuda.set_rng_state(decode_rng(mine["cuda"]), dist.device)
    return mine
