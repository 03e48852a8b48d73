"""A data set held in one tensor, with a vectorised batch path for the trainer."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["InMemoryDataset"]


class InMemoryDataset(Dataset):
    """Samples ``x`` of shape ``(N, *sample_shape)`` with optional int64 labels ``(N,)``.

    Items are ``(x_i,)`` when unlabelled and ``(x_i, y_i)`` when labelled, so the set works
    through a ``DataLoader``; :meth:`batch` gathers a whole batch at once, which is what the
    trainer uses for data that fits in memory.

    Args:
        x: tensor ``(N, *sample_shape)``; images are ``(N, C, H, W)`` in ``[-1, 1]``.
        labels: optional integer tensor ``(N,)`` of class indices ``0..num_classes-1``.
        random_flip: flip images horizontally with probability 1/2 per sample. Applies only
            to images (``x.ndim == 4``); ignored for other data.

    Attributes:
        x, labels: the tensors given.
        sample_shape: per-sample shape, ``tuple(x.shape[1:])``.
        num_classes: ``labels.max() + 1``, or None without labels.
        is_image: whether ``x`` is a batch of images ``(N, C, H, W)``.
    """

    def __init__(self, x: Tensor, labels: Tensor | None = None, random_flip: bool = False):
        if not isinstance(x, Tensor) or x.ndim < 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (N, ...) with ndim >= 2, got {shape}")
        if labels is not None:
            if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
                raise ValueError(
                    f"labels must have shape ({x.shape[0]},) to match x, got {tuple(labels.shape)}"
                )
            if labels.dtype.is_floating_point or labels.dtype == torch.bool:
                raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
            if labels.numel() and int(labels.min()) < 0:
                raise ValueError(f"labels must be >= 0, got minimum {int(labels.min())}")
            labels = labels.long()
        self.x = x
        self.labels = labels
        self.random_flip = random_flip
        self.sample_shape: tuple[int, ...] = tuple(x.shape[1:])
        self.is_image: bool = x.ndim == 4
        self.num_classes: int | None = (
            int(labels.max()) + 1 if labels is not None and labels.numel() else None
        )

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor] | tuple[Tensor, Tensor]:
        """Return ``(x_i,)`` or ``(x_i, y_i)``; the flip (if any) uses torch's global RNG."""
        x = self.x[index]
        if self.random_flip and self.is_image and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        return (x,) if self.labels is None else (x, self.labels[index])

    def batch(
        self, indices: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Gather ``x[indices]`` (and the labels) in one indexing operation.

        With ``random_flip`` on images, sample ``k`` of the batch is flipped horizontally
        when ``torch.rand(len(indices), generator=generator)[k] < 0.5`` (drawn on the
        generator's device), so the same generator state gives the same flips.

        Args:
            indices: int64 tensor ``(B,)`` of sample indices.
            generator: source of the flip decisions (torch's global RNG when None).

        Returns:
            ``(x, labels)``: ``(B, *sample_shape)`` and int64 ``(B,)``, or None without labels.
        """
        if indices.ndim != 1:
            raise ValueError(f"indices must have shape (B,), got {tuple(indices.shape)}")
        indices = indices.to(self.x.device)
        x = self.x[indices]
        if self.random_flip and self.is_image:
            device = generator.device if generator is not None else x.device
            flip = torch.rand(len(indices), generator=generator, device=device) < 0.5
            x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
        labels = None if self.labels is None else self.labels[indices.to(self.labels.device)]
        return x, labels
