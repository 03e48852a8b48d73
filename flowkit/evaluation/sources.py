"""Where images for FID come from, streamed in batches (never all in memory).

Every source yields ``(B, C, H, W)`` float tensors in ``[-1, 1]`` and takes the indices it
should cover, so ``torchrun`` processes can split one set: rank ``r`` of ``W`` reads
items ``r, r + W, r + 2W, ...`` (:func:`rank_indices`).

- a built-in image data set by name (``digits``, ``mnist5k``);
- a folder of image files;
- a ``.safetensors`` file holding a tensor ``samples`` (as ``flowkit sample`` writes it),
  read slice by slice;
- a trained model, sampled on the fly: sample ``i`` starts from noise seeded by
  ``(seed, i)``, so the set does not depend on the batch size or the process count.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor

from flowkit.files import FileReadError

BUILTIN_IMAGE_SETS = ("digits", "mnist5k")


def rank_indices(num: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The items of ``range(num)`` this process handles."""
    return list(range(rank, num, world_size))


def _batches(indices: Sequence[int], batch_size: int) -> Iterator[Sequence[int]]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(indices), batch_size):
        yield indices[start : start + batch_size]


def is_model_dir(path: str | os.PathLike) -> bool:
    """A saved model that :func:`flowkit.load` reads (a run, pipeline, model or diffusers
    directory), as opposed to a data source."""
    from flowkit.loading import locate

    try:
        locate(path)
    except FileNotFoundError:
        return False
    return True


def count_items(
    data: str | os.PathLike,
    channels: int = 3,
    image_size: int | None = None,
    skip_corrupt: bool = False,
) -> int:
    """How many images a data source holds (not for models: their count is chosen)."""
    return (
        len(_open_dataset(str(data), channels, image_size, skip_corrupt))
        if not str(data).endswith(".safetensors")
        else _safetensors_length(Path(data))
    )


def _safetensors_length(path: Path, key: str = "samples") -> int:
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"samples file {str(path)!r} does not exist")
    try:
        with safe_open(path, framework="pt") as handle:
            keys = list(handle.keys())
            shape = handle.get_slice(key).get_shape() if key in keys else None
    except Exception as error:  # safetensors' own errors name neither the file nor the fix
        raise FileReadError(
            f"samples file {str(path)!r} is not a valid safetensors file ({error}); write "
            "samples with `flowkit sample ... --out FILE.safetensors`"
        ) from error
    if shape is None:
        raise ValueError(f"{str(path)!r} has no tensor {key!r}; it holds {keys}")
    return shape[0]


@functools.lru_cache(maxsize=4)
def _open_dataset(data: str, channels: int, image_size: int | None, skip_corrupt: bool):
    """The data set (opened once for counting and reading: a folder with ``skip_corrupt``
    decodes every image when it is opened)."""
    from flowkit.data import ImageFolder, build_dataset

    if str(data) in BUILTIN_IMAGE_SETS:
        return build_dataset(str(data))
    if not Path(data).is_dir():
        raise FileNotFoundError(
            f"{str(data)!r} is neither a built-in image set {list(BUILTIN_IMAGE_SETS)}, "
            "a folder of images, nor a .safetensors file"
        )
    return ImageFolder(
        data,
        image_size=image_size,
        channels=channels,
        random_flip=False,
        skip_corrupt=skip_corrupt,
    )


def iter_data(
    data: str | os.PathLike,
    indices: Sequence[int],
    batch_size: int,
    channels: int = 3,
    image_size: int | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    skip_corrupt: bool = False,
) -> Iterator[Tensor]:
    """Batches of a built-in image set, an image folder or a ``.safetensors`` file."""
    if str(data).endswith(".safetensors"):
        yield from _iter_safetensors(Path(data), indices, batch_size)
        return
    dataset = _open_dataset(str(data), channels, image_size, skip_corrupt)
    if hasattr(dataset, "x"):  # in memory
        for batch in _batches(indices, batch_size):
            yield dataset.x[torch.as_tensor(batch)]
        return
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(
        Subset(dataset, list(indices)),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
    for items in loader:
        yield items[0]


def _iter_safetensors(
    path: Path, indices: Sequence[int], batch_size: int, key: str = "samples"
) -> Iterator[Tensor]:
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"samples file {str(path)!r} does not exist")
    _safetensors_length(path, key)
    with safe_open(path, framework="pt") as handle:
        tensor = handle.get_slice(key)
        for batch in _batches(indices, batch_size):
            lo, hi = batch[0], batch[-1] + 1
            step = batch[1] - batch[0] if len(batch) > 1 else 1
            yield tensor[lo:hi][::step].float()  # rows lo..hi, then this rank's stride


def iter_model_samples(
    model_dir: str | os.PathLike,
    indices: Sequence[int],
    batch_size: int,
    nfe: int | None,
    method: str | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    options: dict | None = None,
) -> Iterator[tuple[Tensor, int]]:
    """``(images in [-1, 1], nfe used)`` drawn from a saved model (:func:`flowkit.load`),
    sample ``i`` from ``(seed, i)``; ``method`` None is Euler (a GBM model's own sampler).
    ``options`` go to :meth:`~flowkit.loading.LoadedModel.sample` (for ``method="dmcmc"``
    its chain settings: the chains persist across batches, so the samples are correlated
    MCMC outputs; the ``nfe`` is the counted chain + integrator calls per sample)."""
    from flowkit.loading import load

    model = load(model_dir).to(device or torch.device("cpu"))
    for batch in _batches(indices, batch_size):
        result = model.sample(batch, seed, nfe=nfe, method=method, **(options or {}))
        yield result.x.clamp(-1, 1), result.nfe
