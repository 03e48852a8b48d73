"""FID end to end: stream images through a feature network into statistics, compare.

``FID = ||mu_s - mu_r||^2 + tr(S_s) + tr(S_r) - 2 tr((S_s^{1/2} S_r S_s^{1/2})^{1/2})``
between the Gaussian statistics of the samples' features and the reference's. The
number is only comparable between runs that use the same feature network and a similar
sample count (the standard is 50k), so both are recorded with every score.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from flowkit.evaluation.frechet import frechet_distance
from flowkit.evaluation.sources import (
    count_items,
    is_model_dir,
    iter_data,
    iter_model_samples,
    rank_indices,
)
from flowkit.evaluation.stats import UNKNOWN, FeatureStats, load_stats

STANDARD_COUNT = 50_000
AUTO_FEATURES = {(1, 8, 8): "digits", (1, 28, 28): "mnist"}


@dataclass
class FIDResult:
    """A score with what it depends on: the sample count, the extractor and the NFE."""

    fid: float
    num: int
    features: str
    nfe: int | None
    seconds: float
    reference: str

    def to_dict(self) -> dict:
        return asdict(self)


def auto_features(sample_shape: tuple[int, ...]) -> str:
    """The default extractor for images of ``sample_shape``: the digit classifiers for
    8x8 and 28x28 grey images, Inception otherwise."""
    return AUTO_FEATURES.get(tuple(sample_shape), "inception")


def accumulate(
    batches: Iterable[Tensor],
    features: str | torch.nn.Module,
    *,
    total: int | None = None,
    device: torch.device | None = None,
    progress: bool = True,
    desc: str = "features",
    autocast_dtype: torch.dtype | None = None,
) -> FeatureStats:
    """Feature statistics of every image the batches hold (``"auto"`` picks the extractor
    from the first batch's shape), summed over ``torchrun`` processes. ``autocast_dtype``
    (bf16 / fp16, CUDA only) runs the feature network in reduced precision; statistics
    stay float64."""
    from flowkit.evaluation.features import get_extractor

    iterator: Iterator[Tensor] = iter(batches)
    first = next(iterator, None)
    if first is None:
        raise ValueError("no images to compute statistics of")
    if features == "auto":
        features = auto_features(tuple(first.shape[1:]))
    options = {"autocast_dtype": autocast_dtype} if autocast_dtype is not None else {}
    extractor = get_extractor(features, device=device, **options)
    stats = FeatureStats(extractor.num_features, extractor.name)
    device = extractor.device
    bar = tqdm(total=total, desc=desc, unit="img", disable=not progress)
    with torch.inference_mode():
        for batch in _chain(first, iterator):
            stats.update(extractor(batch.to(device, non_blocking=True)))
            bar.update(len(batch))
    bar.close()
    return stats.all_reduce()


def _chain(first: Tensor, rest: Iterator[Tensor]) -> Iterator[Tensor]:
    yield first
    yield from rest


def _rank() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def dataset_stats(
    data: str | os.PathLike,
    features: str | torch.nn.Module = "auto",
    *,
    num: int | None = None,
    batch_size: int = 250,
    channels: int = 3,
    image_size: int | None = None,
    device: torch.device | None = None,
    num_workers: int = 0,
    progress: bool = True,
    autocast_dtype: torch.dtype | None = None,
    skip_corrupt: bool = False,
) -> FeatureStats:
    """Reference statistics of a built-in image set, an image folder or a samples file
    (``skip_corrupt``: leave undecodable images of a folder out, with a warning)."""
    total = count_items(data, channels, image_size, skip_corrupt)
    num = total if num is None else min(num, total)
    rank, world = _rank()
    pin = device is not None and torch.device(device).type == "cuda"
    batches = iter_data(
        data,
        rank_indices(num, rank, world),
        batch_size,
        channels,
        image_size,
        num_workers,
        pin,
        skip_corrupt,
    )
    return accumulate(
        batches,
        features,
        total=num // world,
        device=device,
        progress=progress and rank == 0,
        desc="reference",
        autocast_dtype=autocast_dtype,
    )


def fid(
    source: str | os.PathLike,
    ref: str | os.PathLike,
    features: str | torch.nn.Module = "auto",
    *,
    nfe: int | None = None,
    num: int | None = None,
    method: str | None = None,
    seed: int = 0,
    batch_size: int = 250,
    channels: int = 3,
    image_size: int | None = None,
    device: torch.device | None = None,
    progress: bool = True,
    autocast_dtype: torch.dtype | None = None,
    skip_corrupt: bool = False,
    sampler_options: dict | None = None,
) -> FIDResult:
    """FID of ``source`` (a model drawn on the fly, an image folder, a built-in image set or
    a ``.safetensors`` of samples) against the statistics file ``ref``.

    A model needs ``nfe`` and ``num``; its sample ``i`` starts from noise seeded by
    ``(seed, i)``. ``features="auto"`` uses the reference's extractor when it names one.
    ``sampler_options`` go to the model's ``sample`` (``method="dmcmc"``: denoising MCMC's
    settings; its samples are correlated outputs of persistent chains, and the recorded
    ``nfe`` is the counted chain + integrator calls per sample, burn-in apart).
    """
    reference = load_stats(ref)
    if features == "auto" and reference.extractor != UNKNOWN:
        features = reference.extractor
    rank, world = _rank()
    tic = time.perf_counter()
    used_nfe: list[int] = []
    if is_model_dir(source):
        from flowkit.solvers.ode import ADAPTIVE_METHODS

        if num is None or (nfe is None and method not in ADAPTIVE_METHODS):
            raise ValueError("sampling a model for FID needs --num, and --nfe unless adaptive")
        draws = iter_model_samples(
            source,
            rank_indices(num, rank, world),
            batch_size,
            nfe,
            method,
            seed,
            device,
            sampler_options,
        )
        batches = (_record(images, n, used_nfe) for images, n in draws)
    else:
        total = count_items(source, channels, image_size, skip_corrupt)
        num = total if num is None else min(num, total)
        indices = rank_indices(num, rank, world)
        batches = iter_data(
            source, indices, batch_size, channels, image_size, skip_corrupt=skip_corrupt
        )
    stats = accumulate(
        batches,
        features,
        total=num // world,
        device=device,
        progress=progress and rank == 0,
        desc="samples",
        autocast_dtype=autocast_dtype,
    )
    if reference.extractor not in (UNKNOWN, stats.extractor):
        raise ValueError(
            f"the reference {str(ref)!r} was computed with features {reference.extractor!r} "
            f"but the samples with {stats.extractor!r}; pass --features {reference.extractor}"
        )
    if stats.count < STANDARD_COUNT:
        warnings.warn(
            f"FID from {stats.count} samples (the standard is {STANDARD_COUNT}): the score is "
            "biased upwards and comparable only with scores from the same count",
            stacklevel=2,
        )
    score = frechet_distance(stats.mean, stats.covariance, reference.mean, reference.covariance)
    return FIDResult(
        fid=float(score),
        num=stats.count,
        features=stats.extractor,
        nfe=max(used_nfe) if used_nfe else None,
        seconds=round(time.perf_counter() - tic, 3),
        reference=str(Path(ref)),
    )


def _record(images: Tensor, nfe: int, used: list[int]) -> Tensor:
    used.append(nfe)
    return images
