"""Sample pictures written during and after training."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from flowkit.objectives import Objective
from flowkit.paths import AffinePath
from flowkit.solvers import sample_ode, seeded_noise
from flowkit.training.config import RunConfig


@torch.no_grad()
def draw_samples(
    model: nn.Module,
    shape: tuple[int, ...],
    num: int,
    nfe: int,
    method: str,
    path: AffinePath,
    seed: int,
    device: torch.device,
) -> torch.Tensor:
    """``num`` samples of ``model`` from noise seeded by ``seed`` (same noise every call)."""
    x0 = seeded_noise(shape, range(num), seed).to(device) * path.prior_std
    return sample_ode(model, x0, nfe=nfe, method=method, path=path).x.cpu()


def write_snapshot(
    model: nn.Module, dataset, config: RunConfig, out: Path, objective: Objective
) -> Path | None:
    """A PNG grid (images) or scatter plot over the data (2-D); nothing for other shapes,
    nor for an objective whose model makes no samples (``objective.has_samples`` False: a
    noise-level classifier).

    Samples come from ``objective.generate(model, num, shape, seed, device)``, or when it
    returns None from the ODE on ``objective.path``.
    """
    from flowkit.data import save_image_grid, save_scatter

    shape = tuple(dataset.sample_shape)
    if not objective.has_samples or not (len(shape) == 3 or shape == (2,)):
        return None
    cfg = config.train
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    seed = cfg.seed + 12345
    with torch.no_grad():
        samples = objective.generate(model, cfg.sample_num, shape, seed, device)
    if samples is None:
        samples = draw_samples(
            model,
            shape,
            cfg.sample_num,
            cfg.sample_nfe,
            cfg.sample_method,
            objective.path,
            seed,
            device,
        )
    model.train(was_training)
    if len(shape) == 3:
        return save_image_grid(samples, out)
    reference = dataset.x[: min(len(dataset), 5000)] if hasattr(dataset, "x") else None
    return save_scatter(samples, out, reference=reference)
