"""A data set over the image files of a folder (for example CIFAR-10 exported to PNGs)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from flowkit.files import FileReadError

__all__ = ["IMAGE_EXTENSIONS", "CorruptImageError", "ImageFolder"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

SKIP_HINT = (
    "remove or replace the file, or skip corrupt images with a warning: "
    "ImageFolder(..., skip_corrupt=True), on the command line --skip-corrupt"
)


class CorruptImageError(FileReadError):
    """An image file that Pillow cannot decode (not an image, truncated, damaged); a
    ``ValueError`` whose message names the file and how to skip such files."""


def _is_corrupt(error: BaseException) -> bool:
    """Whether ``error`` from opening or decoding an image means the file's content is bad.

    Pillow raises ``UnidentifiedImageError`` (an ``OSError``) for what it cannot identify,
    ``OSError`` for truncated or damaged data, and ``SyntaxError`` / ``ValueError`` from some
    decoders. A file that is missing or cannot be read is not corrupt: that error stands.
    """
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return False
    return isinstance(error, (OSError, SyntaxError, ValueError, EOFError))


class ImageFolder(Dataset):
    """Images found recursively under ``root``, as float32 ``(C, H, W)`` in ``[-1, 1]``.

    Layout: when every image lies inside a first-level subfolder (``root/<class>/...``), the
    sorted subfolder names are the classes and items are ``(x, y)`` with int64 ``y``; when
    every image lies directly in ``root``, items are ``(x,)``. Mixing both is an error.

    Each image is converted to RGB (``channels=3``) or grey (``channels=1``). With
    ``image_size``, it is centre-cropped to a square and resized to ``image_size`` with
    bicubic (antialiased) resampling; without it, every image must have the size of the
    first one (checked when the image is loaded).

    Args:
        root: folder to search.
        image_size: side of the square output, or None to keep the native size.
        channels: 3 (RGB) or 1 (grey).
        random_flip: flip each item horizontally with probability 1/2 (torch's global RNG,
            so a DataLoader's per-worker seeding applies).
        skip_corrupt: decode every image once here and leave out those that cannot be decoded,
            with one warning that gives their count and names the first few. Without it (the
            default) nothing is decoded up front and a corrupt image raises
            :class:`CorruptImageError` (a ``ValueError`` naming the file) when it is loaded.
            Classes come from the folder names either way, so labels do not depend on which
            files were skipped.

    Raises:
        CorruptImageError: an image cannot be decoded (without ``skip_corrupt``), or none can.

    Attributes:
        files: sorted image paths (without the skipped ones).
        skipped: the corrupt image paths left out (empty without ``skip_corrupt``).
        labels: int64 tensor ``(N,)`` of class indices, or None.
        classes: sorted class folder names (empty without classes).
        sample_shape: ``(channels, H, W)``.
        num_classes: ``len(classes)``, or None without classes.
        is_image: always True.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: int | None = None,
        channels: int = 3,
        random_flip: bool = True,
        skip_corrupt: bool = False,
    ):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {str(root)!r} does not exist or is not a folder")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be a positive int or None, got {image_size}")
        files = sorted(
            p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )
        if not files:
            raise ValueError(
                f"no images found under {str(root)!r}; looked for extensions {IMAGE_EXTENSIONS}"
            )
        top = [p.relative_to(root).parts for p in files]
        nested = [len(parts) > 1 for parts in top]
        if any(nested) and not all(nested):
            raise ValueError(
                f"{str(root)!r} holds images both directly and in subfolders; put all images in "
                "class subfolders (labelled) or all directly in the folder (unlabelled)"
            )
        self.root = root
        self.channels = channels
        self.image_size = image_size
        self.random_flip = random_flip
        self.skip_corrupt = skip_corrupt
        self.skipped: list[Path] = []
        if skip_corrupt:
            keep = [self._readable(path) for path in files]
            self.skipped = [path for path, ok in zip(files, keep, strict=True) if not ok]
            if self.skipped:
                self._warn_skipped(len(files))
        else:
            keep = [True] * len(files)
        self.files = [path for path, ok in zip(files, keep, strict=True) if ok]
        if not self.files:
            raise CorruptImageError(
                f"none of the {len(files)} images under {str(root)!r} can be decoded "
                f"(first: {str(files[0])!r}); check that the folder holds image files"
            )
        if all(nested):
            self.classes: list[str] = sorted({parts[0] for parts in top})
            index = {name: i for i, name in enumerate(self.classes)}
            labels = [index[p[0]] for p, ok in zip(top, keep, strict=True) if ok]
            self.labels: Tensor | None = torch.tensor(labels, dtype=torch.long)
        else:
            self.classes = []
            self.labels = None
        self.num_classes: int | None = len(self.classes) if self.classes else None
        self.is_image = True
        self._size = (image_size, image_size) if image_size else self._open(self.files[0]).size
        self.sample_shape: tuple[int, int, int] = (channels, self._size[1], self._size[0])

    def __len__(self) -> int:
        return len(self.files)

    def _open(self, path: Path) -> Image.Image:
        """The decoded image, converted to RGB or grey; a corrupt file raises
        :class:`CorruptImageError` naming it."""
        try:
            with Image.open(path) as image:
                return image.convert("RGB" if self.channels == 3 else "L")
        except Exception as error:
            if not _is_corrupt(error):
                raise
            raise CorruptImageError(
                f"image {str(path)!r} cannot be decoded ({type(error).__name__}: {error}); "
                + SKIP_HINT
            ) from error

    def _readable(self, path: Path) -> bool:
        try:
            self._open(path)
        except CorruptImageError:
            return False
        return True

    def _warn_skipped(self, total: int) -> None:
        count, shown = len(self.skipped), 5
        names = ", ".join(repr(str(p.relative_to(self.root))) for p in self.skipped[:shown])
        more = f" and {count - shown} more" if count > shown else ""
        warnings.warn(
            f"skipped {count} corrupt image{'s' if count != 1 else ''} of {total} under "
            f"{str(self.root)!r}: {names}{more}; using the other {total - count}",
            UserWarning,
            stacklevel=3,
        )

    def load(self, index: int) -> Tensor:
        """Image ``index`` as float32 ``(C, H, W)`` in ``[-1, 1]``, without the random flip."""
        path = self.files[index]
        image = self._open(path)
        if self.image_size is not None:
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            image = image.resize(self._size, Image.Resampling.BICUBIC)
        elif image.size != self._size:
            raise ValueError(
                f"image {str(path)!r} is {image.size[0]}x{image.size[1]} but "
                f"{str(self.files[0])!r} is {self._size[0]}x{self._size[1]}; "
                "set image_size to resize all images to one size"
            )
        array = np.asarray(image, dtype=np.uint8).reshape(image.size[1], image.size[0], -1)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 127.5 - 1.0

    def __getitem__(self, index: int) -> tuple[Tensor] | tuple[Tensor, Tensor]:
        """Return ``(x,)`` or ``(x, y)`` with ``x`` float32 ``(C, H, W)`` and int64 ``y``."""
        x = self.load(index)
        if self.random_flip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        return (x,) if self.labels is None else (x, self.labels[index])
