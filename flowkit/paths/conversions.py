"""Conversions between the four things a network can predict on an affine path.

With ``x_t = a x1 + s x0`` (``a = alpha(t)``, ``s = sigma(t)``, ``x0 ~ N(0, I)``):

- ``"data"``: the clean data ``x1`` (the diffusion literature's "x0-prediction"; in
  flowkit's notation ``x0`` is the noise, so ``"x0"`` is accepted only as a deprecated alias
  of ``"data"``, with a warning).
- ``"epsilon"``: the noise ``x0``.
- ``"score"``: ``grad log p_t(x_t) = -epsilon / s``.
- ``"velocity"``: ``dx_t/dt = a' x1 + s' epsilon``.

Every conversion goes through the pair ``(x1, epsilon)``:

- from velocity, with ``det = a s' - a' s``: ``x1 = (s' x_t - s v) / det``,
  ``epsilon = (a v - a' x_t) / det``;
- from epsilon: ``x1 = (x_t - s epsilon) / a``; from score: ``epsilon = -s score``;
- from data: ``epsilon = (x_t - a x1) / s``.

Stability near the endpoints. The coefficients are computed in float64 and cast to the
prediction's dtype. Divisions use clamped denominators: ``a`` and ``s`` are clamped to
at least ``MIN_SCALE = 1e-6`` and ``det`` (negative on every flowkit path) to at most
``-MIN_SCALE``. Conversions that are singular by nature (epsilon -> data at ``t = 0``,
where ``a = 0``; data -> epsilon or score at ``t = 1``, where ``s = 0`` on rectified,
VP and cosine paths) therefore return large but finite values there instead of
inf/NaN; everywhere else they are exact. The rectified path's velocity <-> data /
epsilon conversions have ``det = -1`` and are exact on all of ``[0, 1]``.

Where a sampler may start (:func:`start_time`). A velocity or data prediction converts at
every ``t < 1`` (``s > 0``, ``det < 0``). An epsilon or score prediction needs
``x1 = (x_t - s epsilon) / a``: an error ``delta`` in ``epsilon`` becomes ``s delta / a`` in
the data estimate and ``|det| delta / a`` in the velocity, unbounded where ``a = 0`` (the
rectified and cosine paths at ``t = 0``, where ``x_t`` is pure noise and holds nothing from
which to estimate ``x1``). Such fields start where ``a >= START_ALPHA = 1e-3``: ``t = 1e-3``
on the rectified path (Liu et al.'s start), ``2 asin(1e-3) / pi = 6.4e-4`` on the cosine
path, and ``t = 0`` on VP, sub-VP, VE and DDPM paths, whose ``a(0)`` is already larger
(``6.6e-3`` on the default VP path). Starting from noise there ignores the ``a x1`` part of
``x_t``, an error of the size VP's own start makes.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from flowkit.paths.affine import broadcast_like

if TYPE_CHECKING:
    from flowkit.paths.affine import AffinePath

PREDICTIONS = ("velocity", "epsilon", "data", "score")
DEPRECATED_PREDICTIONS = {"x0": "data"}
MIN_SCALE = 1e-6
START_ALPHA = 1e-3


def check_prediction(name: str) -> str:
    """The canonical name of prediction type ``name`` (``"x0"`` -> ``"data"``, with a
    ``FutureWarning``); raise naming the choices for an unknown one."""
    if name in DEPRECATED_PREDICTIONS:
        warnings.warn(
            f"prediction {name!r} is deprecated: it means the clean data, which flowkit calls "
            f"{DEPRECATED_PREDICTIONS[name]!r} (x0 is the noise in flowkit's notation)",
            FutureWarning,
            stacklevel=3,
        )
        return DEPRECATED_PREDICTIONS[name]
    if name not in PREDICTIONS:
        raise ValueError(f"unknown prediction {name!r}; expected one of {list(PREDICTIONS)}")
    return name


def _coefficients(path: AffinePath, t: Tensor, like: Tensor) -> tuple[Tensor, ...]:
    coefficients = path.coefficients(t.to(torch.float64))
    return tuple(broadcast_like(c, like).to(like.dtype) for c in coefficients)


def to_data_and_noise(
    path: AffinePath, pred: Tensor, xt: Tensor, t: Tensor, src: str
) -> tuple[Tensor, Tensor]:
    """Turn a ``src`` prediction into ``(x1_hat, epsilon_hat)``, each shaped like ``xt``."""
    src = check_prediction(src)
    a, s, da, ds = _coefficients(path, t, xt)
    a_safe, s_safe = a.clamp_min(MIN_SCALE), s.clamp_min(MIN_SCALE)
    if src == "velocity":
        det = (a * ds - da * s).clamp_max(-MIN_SCALE)
        return (ds * xt - s * pred) / det, (a * pred - da * xt) / det
    if src == "data":
        return pred, (xt - a * pred) / s_safe
    eps = pred if src == "epsilon" else -s * pred
    return (xt - s * eps) / a_safe, eps


def from_data_and_noise(
    path: AffinePath, x1: Tensor, eps: Tensor, xt: Tensor, t: Tensor, dst: str
) -> Tensor:
    """Express the pair ``(x1_hat, epsilon_hat)`` as a ``dst`` prediction."""
    dst = check_prediction(dst)
    if dst == "data":
        return x1
    if dst == "epsilon":
        return eps
    a, s, da, ds = _coefficients(path, t, xt)
    if dst == "score":
        return -eps / s.clamp_min(MIN_SCALE)
    return da * x1 + ds * eps


def convert(path: AffinePath, pred: Tensor, xt: Tensor, t: Tensor, src: str, dst: str) -> Tensor:
    """Convert ``pred`` (a ``src`` prediction at ``(x_t, t)``) into a ``dst`` prediction.

    Args:
        path: the affine path the prediction lives on.
        pred: ``(B, *D)`` network output.
        xt: ``(B, *D)`` the point it was evaluated at.
        t: ``(B,)`` times.
        src, dst: one of ``"velocity"``, ``"epsilon"``, ``"data"``, ``"score"``.
    """
    src, dst = check_prediction(src), check_prediction(dst)
    if src == dst:
        return pred
    x1, eps = to_data_and_noise(path, pred, xt, t, src)
    return from_data_and_noise(path, x1, eps, xt, t, dst)


def start_time(path: AffinePath, prediction: str) -> float:
    """The earliest time at which a ``prediction`` converts to a velocity (module docstring).

    0 for ``velocity`` and ``data``; for ``epsilon`` and ``score`` the first ``t`` with
    ``alpha(t) >= START_ALPHA`` (0 if ``alpha(0)`` is already that large), found by bisection
    to float64 precision (``alpha`` increases with ``t`` on every flowkit path).

    Raises:
        ValueError: an unknown prediction, or a path whose ``alpha`` stays below
            ``START_ALPHA`` up to ``path.t_max``.
    """
    prediction = check_prediction(prediction)
    if prediction in ("velocity", "data"):
        return 0.0

    def alpha(t: float) -> float:
        return float(path.coefficients(torch.tensor([t], dtype=torch.float64))[0])

    lo, hi = 0.0, float(path.t_max)
    if alpha(lo) >= START_ALPHA:
        return 0.0
    if alpha(hi) < START_ALPHA:
        raise ValueError(
            f"the {path.name} path never reaches alpha >= {START_ALPHA} before t_max={hi}: a "
            f"{prediction!r} prediction cannot be converted to a velocity on it"
        )
    for _ in range(200):  # invariant: alpha(lo) < START_ALPHA <= alpha(hi)
        mid = (lo + hi) / 2
        if not lo < mid < hi:
            break
        lo, hi = (lo, mid) if alpha(mid) >= START_ALPHA else (mid, hi)
    return hi
