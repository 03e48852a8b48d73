"""The flow-matching loss on any affine path, with a coupling hook.

For a coupling ``pi`` of noise ``x0`` and data ``x1``, a time law ``p(t)`` and an affine
path ``x_t = alpha(t) x1 + sigma(t) x0``, the loss of a network ``f`` that predicts
``prediction`` (velocity by default) is, per sample,

    L_i = metric( f(x_t, t), target(x0, x1, t) ),   (x0, x1) ~ pi,  t ~ p(t),

with target ``dx_t/dt = alpha' x1 + sigma' x0`` for velocity (``x1 - x0`` on the
rectified path: Liu et al.'s rectified flow), ``x0`` for epsilon, ``x1`` for the "x0"
(data) prediction and ``-x0 / sigma`` for score. With the L2 metric the minimiser is
``E[target | x_t]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowkit.couplings import Independent
from flowkit.objectives.base import Objective
from flowkit.objectives.metrics import L2
from flowkit.objectives.time_samplers import TimeSampler
from flowkit.paths import AffinePath, PathSample, check_prediction, rectified
from flowkit.paths.affine import broadcast_like

Coupling = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor, Tensor | None]]


def regression_target(path: AffinePath, sample: PathSample, prediction: str) -> Tensor:
    """What a ``prediction`` network should output at ``(x_t, t)`` for this pair."""
    prediction = check_prediction(prediction)
    if prediction == "velocity":
        return sample.dxt
    if prediction == "epsilon":
        return sample.x0
    if prediction == "data":
        return sample.x1
    _, sigma, _, _ = path.coefficients(sample.t)
    return -sample.x0 / broadcast_like(sigma, sample.x0).clamp_min(1e-6)


def call_field(model: nn.Module | Callable, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
    """Call a field, passing class labels only when there are some."""
    return model(x, t) if cond is None else model(x, t, class_labels=cond)


class FlowMatchingLoss(Objective):
    """``loss(model, x1, x0=None, cond=None, generator=None) -> Tensor (B,)``.

    Args:
        path: the affine path (rectified by default).
        time_sampler: the law of ``t`` (uniform on ``[1e-3, 1]`` by default, Liu et al.).
        metric: ``metric(pred, target, sample) -> (B,)`` (L2 by default).
        coupling: applied to ``(x0, x1, cond)`` before interpolating (independent by
            default; minibatch OT or paired reflow data plug in here).
        prediction: what the network outputs; ``None`` reads ``model.prediction`` and
            falls back to ``"velocity"``.
    """

    def __init__(
        self,
        path: AffinePath | None = None,
        time_sampler: TimeSampler | None = None,
        metric: Callable[[Tensor, Tensor, PathSample], Tensor] | None = None,
        coupling: Coupling | None = None,
        prediction: str | None = None,
    ) -> None:
        self.path = path or rectified()
        self.time_sampler = time_sampler or TimeSampler("uniform")
        self.metric = metric or L2()
        self.coupling = coupling or Independent()
        self.prediction = None if prediction is None else check_prediction(prediction)

    def __call__(
        self,
        model: nn.Module | Callable,
        x1: Tensor,
        x0: Tensor | None = None,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if x0 is None:
            x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        x0, x1, cond = self.coupling(x0, x1, cond)
        t = self.time_sampler.sample(x1.shape[0], generator=generator, device=x1.device)
        sample = self.path.sample(x0, x1, t.to(x1.dtype))
        prediction = self.prediction or getattr(model, "prediction", "velocity")
        pred = call_field(model, sample.xt, sample.t, cond)
        return self.metric(pred, regression_target(self.path, sample, prediction), sample)

    def __repr__(self) -> str:
        return (
            f"FlowMatchingLoss(path={self.path}, time_sampler={self.time_sampler}, "
            f"metric={self.metric}, coupling={self.coupling})"
        )
