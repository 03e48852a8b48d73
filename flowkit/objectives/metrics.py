"""Per-sample distances between a network prediction and its regression target.

A metric is a callable ``metric(pred, target, sample) -> Tensor (B,)``: ``pred`` and
``target`` are ``(B, *D)``, ``sample`` is the :class:`~flowkit.paths.PathSample` they came
from (for metrics that need ``x_t``, ``t`` or the data ``x1``). Metrics never reduce over
the batch; losses and trainers decide how to weight and average.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowkit.paths.affine import AffinePath, PathSample, rectified

LPIPS_VARIANTS = ("t", "inverse_t")


def _check_shapes(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"pred has shape {tuple(pred.shape)} but target has {tuple(target.shape)}; "
            "expected equal shapes (B, *D)"
        )


class L2:
    """Mean squared error per sample: ``mean_{D} (pred - target)^2``, shape ``(B,)``.

    The mean (not the sum) over the non-batch dimensions keeps the loss's scale the same
    across resolutions and channel counts; Liu et al.'s objective is this up to the
    constant factor ``d`` (elements per sample).
    """

    def __call__(self, pred: Tensor, target: Tensor, sample: PathSample | None = None) -> Tensor:
        _check_shapes(pred, target)
        return (pred - target).pow(2).reshape(pred.shape[0], -1).mean(dim=1)

    def __repr__(self) -> str:
        return "L2()"


class PseudoHuber:
    """Pseudo-Huber distance per sample: ``sqrt(||pred - target||^2 + c^2) - c``, ``(B,)``.

    ``||.||^2`` sums the squares over the non-batch dimensions. For errors much smaller
    than ``c`` it is ``||e||^2 / (2 c)`` (quadratic, like L2); for errors much larger, it
    is ``||e|| - c`` (linear, robust to outliers). It is evaluated as the equal
    ``||e||^2 / (sqrt(||e||^2 + c^2) + c)``, which does not cancel in float32 when
    ``||e|| << c``.

    Args:
        c: the transition scale, > 0. ``None`` uses 2-RF++'s ``c = 0.00054 sqrt(d)`` with
            ``d`` the number of elements per sample (``C H W``), computed at call time.
            (The 2-RF++ code used ``0.00054 d``, their issue #1; pass ``c`` to reproduce
            it.)
    """

    def __init__(self, c: float | None = None) -> None:
        if c is not None and not c > 0:
            raise ValueError(f"c={c} must be > 0 (or None for 0.00054 * sqrt(d))")
        self.c = c

    def scale(self, pred: Tensor) -> float:
        """The ``c`` used for a batch shaped like ``pred``."""
        if self.c is not None:
            return self.c
        return 0.00054 * math.sqrt(pred[0].numel())

    def __call__(self, pred: Tensor, target: Tensor, sample: PathSample | None = None) -> Tensor:
        _check_shapes(pred, target)
        c = self.scale(pred)
        squared = (pred - target).pow(2).reshape(pred.shape[0], -1).sum(dim=1)
        return squared / (torch.sqrt(squared + c**2) + c)

    def __repr__(self) -> str:
        return f"PseudoHuber(c={self.c})"


class LPIPSHuber:
    """2-RF++'s LPIPS-Huber loss (Lee et al. 2024), in flowkit time (``t = 1`` is data).

    For a velocity prediction ``v̂ = pred`` with target ``v`` at ``(x_t, t)``::

        L = t * PseudoHuber(v̂, v) + LPIPS(up(x̂1), up(x1)) / w(t),
        x̂1 = path.convert(v̂, x_t, t, "velocity", "data")      (x_t + (1 - t) v̂ when rectified)

    with ``w(t) = 1`` for ``variant="t"`` and the noise level
    ``w(t) = max(1 - t, min_noise)`` for ``variant="inverse_t"`` (the "1/t" form the
    authors used on CIFAR-10; the clamp keeps the weight finite as ``t -> 1``, and with the
    u-shaped sampler's ``clip = 1e-5`` it never binds). ``up`` upsamples bilinearly
    to ``resize x resize`` (skipped when ``resize`` is None or the images have that size).
    Authors' form, noise level ``s = 1 - t``: ``(1 - s) Huber + LPIPS [/ s]``.

    Args:
        perceptual: ``(a, b) -> (B,)`` or ``(B, 1, 1, 1)`` distance between image batches in
            ``[-1, 1]`` (the lpips package's convention), e.g.
            :func:`flowkit.evaluation.lpips.load_lpips`. It is frozen here (parameters
            ``requires_grad=False``, eval mode); gradients still flow to ``pred``.
        path: the path ``pred`` lives on (rectified by default).
        c: pseudo-Huber scale (see :class:`PseudoHuber`).
        variant: ``"t"`` or ``"inverse_t"``.
        resize: side of the images LPIPS sees (224, as in 2-RF++), or None.
        min_noise: the clamp of the ``inverse_t`` weight, in ``(0, 1]``.
    """

    def __init__(
        self,
        perceptual: nn.Module,
        path: AffinePath | None = None,
        c: float | None = None,
        variant: str = "t",
        resize: int | None = 224,
        min_noise: float = 1e-5,
    ) -> None:
        if variant not in LPIPS_VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {list(LPIPS_VARIANTS)}")
        if resize is not None and not resize > 0:
            raise ValueError(f"resize={resize} must be a positive image side or None")
        if not 0 < min_noise <= 1:
            raise ValueError(f"min_noise={min_noise} must lie in (0, 1]")
        self.perceptual = perceptual.eval().requires_grad_(False)
        self.path = path or rectified()
        self.huber = PseudoHuber(c)
        self.variant = variant
        self.resize = resize
        self.min_noise = min_noise

    def to(self, *args: Any, **kwargs: Any) -> LPIPSHuber:
        """Move the perceptual network (``nn.Module.to`` arguments); returns ``self``."""
        self.perceptual.to(*args, **kwargs)
        return self

    def _upsample(self, images: Tensor) -> Tensor:
        if self.resize is None or images.shape[-2:] == (self.resize, self.resize):
            return images
        return F.interpolate(
            images, size=(self.resize, self.resize), mode="bilinear", align_corners=False
        )

    def __call__(self, pred: Tensor, target: Tensor, sample: PathSample) -> Tensor:
        _check_shapes(pred, target)
        if pred.dim() != 4:
            raise ValueError(f"LPIPSHuber needs images (B, C, H, W); got shape {tuple(pred.shape)}")
        batch = pred.shape[0]
        t = sample.t.to(pred.dtype)
        x1_hat = self.path.convert(pred, sample.xt, sample.t, "velocity", "data")
        distance = self.perceptual(self._upsample(x1_hat), self._upsample(sample.x1))
        if distance.numel() != batch:
            raise ValueError(
                f"perceptual module returned shape {tuple(distance.shape)}; "
                f"expected ({batch},) or ({batch}, 1, 1, 1)"
            )
        distance = distance.reshape(batch)
        if self.variant == "inverse_t":
            distance = distance / (1 - t).clamp_min(self.min_noise)
        return t * self.huber(pred, target) + distance

    def __repr__(self) -> str:
        return (
            f"LPIPSHuber(perceptual={type(self.perceptual).__name__}, path={self.path}, "
            f"c={self.huber.c}, variant={self.variant!r}, resize={self.resize})"
        )


METRICS = {"l2": L2, "pseudo_huber": PseudoHuber, "lpips_huber": LPIPSHuber}


def build_metric(name: str, **kw: Any) -> L2 | PseudoHuber | LPIPSHuber:
    """Build a metric by name: ``"l2"``, ``"pseudo_huber"`` (kw ``c``) or ``"lpips_huber"``.

    ``"lpips_huber"`` needs ``perceptual=`` a perceptual distance module, e.g.
    ``flowkit.evaluation.lpips.load_lpips("vgg")``; the other kw are :class:`LPIPSHuber`'s.
    """
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; expected one of {sorted(METRICS)}")
    if name == "lpips_huber" and kw.get("perceptual") is None:
        raise ValueError(
            "metric 'lpips_huber' needs perceptual=<module mapping two image batches in "
            "[-1, 1] to (B,) distances>; get one with "
            "flowkit.evaluation.lpips.load_lpips(net='vgg', backbone_weights=PATH)"
        )
    return METRICS[name](**kw)
