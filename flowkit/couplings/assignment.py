"""Exact linear assignment on a CPU: LAPJV (the ``lap`` package) or scipy.

``solve_assignment(cost)`` returns ``sigma`` with ``sigma[j]`` the row matched to column ``j``
in a minimum-cost perfect matching of the square ``cost`` matrix. Backends:

- ``"lapjv"``: Jonker-Volgenant shortest augmenting paths (``lap.lapjv``), run on the cost in
  its own precision (float32 or float64). On 3072-dimensional minibatch costs it is 2-4x
  faster than scipy at batch 256-1024 (``benchmarks/ot.py``). Needs the ``ot`` extra
  (``pip install 'flowkit[ot]'``).
- ``"scipy"``: ``scipy.optimize.linear_sum_assignment`` (shortest augmenting paths, LAPJV's
  ancestor without its column reduction / auction initialisation), always available.
- ``"auto"``: ``"lapjv"`` when ``lap`` imports, else ``"scipy"``.

Both are exact for the matrix they are given; a float32 cost is optimal up to float32
rounding of its entries.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

BACKENDS = ("auto", "lapjv", "scipy")


def _import_lap() -> Any:
    try:
        import lap
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'lapjv' assignment backend needs the lap package; install the 'ot' extra: "
            "pip install 'flowkit[ot]'"
        ) from error
    return lap


@functools.cache
def has_lap() -> bool:
    """Whether the ``lap`` package (LAPJV) is importable."""
    try:
        _import_lap()
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """The concrete backend for ``backend`` (``"auto"`` -> ``"lapjv"`` or ``"scipy"``)."""
    if backend not in BACKENDS:
        raise ValueError(f"assignment backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "lapjv" if has_lap() else "scipy"
    if backend == "lapjv":
        _import_lap()  # the error names the extra
    return backend


def solve_assignment(cost: np.ndarray, backend: str = "auto") -> np.ndarray:
    """``sigma`` (int64, ``(n,)``) with ``sigma[j]`` the row matched to column ``j`` in a
    minimum-cost perfect matching of the square, finite ``cost``.

    float32 and float64 costs are solved in their own precision; other dtypes as float64.
    """
    cost = np.asarray(cost)
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"cost must be a square matrix, got shape {cost.shape}")
    n = cost.shape[0]
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    if cost.dtype not in (np.float32, np.float64):
        cost = cost.astype(np.float64)
    if resolve_backend(backend) == "lapjv":
        lap = _import_lap()
        _, _, rows_of_cols = lap.lapjv(np.ascontiguousarray(cost), return_cost=True)
        sigma = np.asarray(rows_of_cols, dtype=np.int64)
        if sigma.min() >= 0 and np.bincount(sigma, minlength=n).max() == 1:
            return sigma
        # not a permutation (lap's float tolerance on a degenerate cost): scipy decides
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    sigma = np.empty(n, dtype=np.int64)
    sigma[cols] = rows
    return sigma
