"""Build a data set by name, as configs and the command line refer to them."""

from __future__ import annotations

import os

from torch.utils.data import Dataset

from flowkit.data.builtin_images import load_digits, load_mnist5k
from flowkit.data.image_folder import ImageFolder
from flowkit.data.in_memory import InMemoryDataset
from flowkit.data.toys import TOY_NAMES, sample_toy

__all__ = ["DATASET_NAMES", "build_dataset"]

_BUILTIN_IMAGES = {"digits": load_digits, "mnist5k": load_mnist5k}
_FOLDERS = ("image_folder", "cifar10")
DATASET_NAMES: tuple[str, ...] = (*TOY_NAMES, *_BUILTIN_IMAGES, *_FOLDERS)


def build_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    num_points: int = 100_000,
    seed: int = 0,
    random_flip: bool | None = None,
    image_size: int | None = None,
    channels: int = 3,
    skip_corrupt: bool = False,
) -> Dataset:
    """Data set ``name``, one of :data:`DATASET_NAMES`.

    - toys ("checkerboard", "8gaussians", "moons", "spirals"): :class:`InMemoryDataset` of
      ``num_points`` points ``(2,)`` drawn with ``seed``.
    - "digits" (8x8) and "mnist5k" (28x28): :class:`InMemoryDataset` of labelled
      ``(1, H, W)`` images; no flips by default (digits are not mirror-symmetric).
    - "image_folder", and its alias "cifar10" (CIFAR-10 exported to image files, which
      cannot be downloaded here): :class:`ImageFolder` over ``root`` with ``image_size``
      and ``channels``; flips on by default.

    Args:
        random_flip: None takes the data set's default given above.
        image_size, channels, skip_corrupt: image-folder options (see :class:`ImageFolder`);
            rejected for the other data sets.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown data set {name!r}; expected one of {list(DATASET_NAMES)}")
    if name in _FOLDERS:
        if root is None:
            raise ValueError(
                f"data set {name!r} reads images from a folder: data.root must be set to it"
            )
        flip = True if random_flip is None else random_flip
        return ImageFolder(
            root,
            image_size=image_size,
            channels=channels,
            random_flip=flip,
            skip_corrupt=skip_corrupt,
        )
    for option, value in (("image_size", image_size), ("skip_corrupt", skip_corrupt or None)):
        if value is not None:
            raise ValueError(f"{option}={value} applies only to {list(_FOLDERS)}, not to {name!r}")
    if name in _BUILTIN_IMAGES:
        x, labels = _BUILTIN_IMAGES[name]()
        return InMemoryDataset(x, labels, random_flip=bool(random_flip))
    return InMemoryDataset(sample_toy(name, num_points, seed))
