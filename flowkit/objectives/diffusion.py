r"""The diffusion loss: epsilon, x0, velocity or score prediction on any affine path.

For data ``x1`` (``(B, *D)``), noise ``x0 ~ N(0, I)`` (or the paired noise given by the
caller), a time ``t`` and an affine path ``x_t = alpha(t) x1 + sigma(t) x0`` (VP, sub-VP, VE,
cosine, a DDPM table through :func:`flowkit.paths.discrete_vp`, ...), the per-sample loss of
a network ``f`` that predicts ``P`` is

    L_i = lambda_S(t_i) * metric(convert_{P -> S}(f(x_t, t)), target_S(x0, x1, t)),

where ``S`` is the *target space* (``P`` itself unless ``target_space`` is set),
``target_S`` is :func:`~flowkit.objectives.regression_target` (epsilon: ``x0``; x0: ``x1``;
score: ``-x0 / sigma``; velocity: flowkit's ``dx_t/dt = alpha' x1 + sigma' x0``, not Salimans
& Ho's ``v``), the conversion is :func:`flowkit.paths.convert` and ``lambda_S`` is the
weighting of :mod:`flowkit.objectives.weighting` (uniform, SNR, min-SNR-gamma, EDM; a
data-space weight expressed in the space ``S``). The metric is elementwise and averaged over
the ``D`` elements of a sample:

    l2:            mean_D (pred - target)^2
    pseudo_huber:  mean_D [sqrt((pred - target)^2 + c^2) - c]     (c = 1e-3)

With ``l2`` and any weighting, the minimiser at each ``t`` is ``E[target_S | x_t]``; the
weighting only decides how the times share the network's capacity.

Times. ``t = t_max * u`` with ``u`` from the time sampler (uniform on ``[1e-3, 1]`` by
default), so training stays at ``t <= t_max`` where ``sigma(t) > 0``: at ``sigma = 0``
the score and VP-velocity targets are infinite and the epsilon target is not a function of
``x_t``. The default ``t_max`` is the path's ``t_max`` (where samplers stop: ``1 - 1e-3`` for
VP and sub-VP, Song et al.'s ``s = 1e-3``; ``1 - 1e-5`` for VE) capped at ``1 - 1e-5``
(rectified, cosine), and ``1 - 1 / T`` for a discrete DDPM path (its timestep 0). The noise
end is the time sampler's: ``alpha(0) > 0`` on VP, sub-VP and VE, while on the cosine path
``alpha(0) = 0`` makes the EDM weight of epsilon and score infinite; uniform's ``eps = 1e-3``
keeps it finite (but large: EDM weighting suits x0 prediction, see
:class:`~flowkit.objectives.preconditioning.EDMPreconditioner`). The VE path's prior is
``N(0, sigma_max^2 I)``: samplers start from ``path.prior_std * x0``.

Paired noise. When the caller passes ``x0`` (a reflow data set's noise), it is used as is
instead of fresh noise: Rectified Diffusion
(:class:`~flowkit.objectives.rectified_diffusion.RectifiedDiffusionLoss`) is this loss on
paired data.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowkit.objectives.base import Objective
from flowkit.objectives.flow_matching import call_field, regression_target
from flowkit.objectives.time_samplers import TimeSampler
from flowkit.objectives.weighting import check_weighting, loss_weight
from flowkit.paths import AffinePath, DiscreteVPPath, check_prediction, vp

METRICS = ("l2", "pseudo_huber")
DATA_END_MARGIN = 1e-5


def default_t_max(path: AffinePath) -> float:
    """The largest training time for ``path`` (see the module docstring)."""
    if isinstance(path, DiscreteVPPath):
        return float(path.time_of(0))
    return min(path.t_max, 1 - DATA_END_MARGIN)


def elementwise_error(pred: Tensor, target: Tensor, metric: str, c: float) -> Tensor:
    """``mean_D`` of the elementwise ``metric`` between ``(B, *D)`` tensors, shape ``(B,)``.

    ``pseudo_huber`` is ``sqrt(e^2 + c^2) - c``, evaluated as the equal
    ``e^2 / (sqrt(e^2 + c^2) + c)``, which does not cancel in float32 when ``|e| << c``.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred has shape {tuple(pred.shape)} but target has {tuple(target.shape)}; "
            "expected equal shapes (B, *D)"
        )
    squared = (pred - target).pow(2)
    if metric == "pseudo_huber":
        squared = squared / (torch.sqrt(squared + c**2) + c)
    return squared.reshape(pred.shape[0], -1).mean(dim=1)


class DiffusionLoss(Objective):
    """``loss(model, x1, x0=None, cond=None, generator=None) -> Tensor (B,)``, never reduced.

    See the module docstring for the math.

    Args:
        path: the affine path (VP by default).
        prediction: what the network outputs (``"epsilon"``, ``"data"``, ``"velocity"``,
            ``"score"``); ``None`` reads ``model.prediction`` and falls back to
            ``"velocity"``, as the samplers do.
        weighting: ``"uniform"``, ``"snr"``, ``"min_snr"`` or ``"edm"``
            (:mod:`flowkit.objectives.weighting`).
        gamma: the min-SNR clamp, > 0 (Hang et al.: 5).
        sigma_data: the data std of the EDM weighting, > 0 (0.5 for images in ``[-1, 1]``).
        time_sampler: the law of ``u``, ``t = t_max * u`` (uniform on ``[1e-3, 1]`` by default).
        t_max: the largest training time, in ``(0, 1]``; ``None`` for :func:`default_t_max`.
        target_space: the prediction type the error is measured in (``None``: the
            network's own); e.g. ``"data"`` turns an epsilon prediction into ``x̂1`` first.
        metric: ``"l2"`` or ``"pseudo_huber"`` (elementwise, averaged per sample).
        c: the pseudo-Huber scale, > 0.

    Attributes:
        path, time_sampler, t_max, prediction, weighting, gamma, sigma_data, target_space,
        metric, c: as given (defaults filled in).
    """

    def __init__(
        self,
        path: AffinePath | None = None,
        prediction: str | None = None,
        weighting: str = "uniform",
        gamma: float = 5.0,
        sigma_data: float = 0.5,
        time_sampler: TimeSampler | None = None,
        t_max: float | None = None,
        target_space: str | None = None,
        metric: str = "l2",
        c: float = 1e-3,
    ) -> None:
        # numbers from YAML may arrive as strings ("1e-3" is a string in YAML 1.1)
        gamma, sigma_data, c = float(gamma), float(sigma_data), float(c)
        check_weighting(weighting, gamma, sigma_data)
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {list(METRICS)}")
        if not c > 0:
            raise ValueError(f"c={c} must be > 0 (the pseudo-Huber scale)")
        self.path = path or vp()
        if t_max is not None and not 0 < float(t_max) <= 1:
            raise ValueError(f"t_max={t_max} must lie in (0, 1]")
        self.t_max = default_t_max(self.path) if t_max is None else float(t_max)
        self.prediction = None if prediction is None else check_prediction(prediction)
        self.target_space = None if target_space is None else check_prediction(target_space)
        self.time_sampler = time_sampler or TimeSampler("uniform")
        self.weighting, self.gamma, self.sigma_data = weighting, gamma, sigma_data
        self.metric, self.c = metric, c

    def weight(self, t: Tensor, space: str) -> Tensor:
        """``lambda_space(t)``, float64 ``(B,)``: see :func:`flowkit.objectives.loss_weight`."""
        return loss_weight(self.path, t, space, self.weighting, self.gamma, self.sigma_data)

    def __call__(
        self,
        model: nn.Module | Callable,
        x1: Tensor,
        x0: Tensor | None = None,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Per-sample losses ``(B,)``.

        Args:
            model: a field ``model(x, t)`` (``model(x, t, class_labels=cond)`` with ``cond``).
            x1: ``(B, *D)`` data.
            x0: ``(B, *D)`` paired noise, used as is; ``None`` draws ``N(0, I)`` with
                ``generator``.
            cond: ``(B,)`` class labels or None.
            generator: the source of the noise and of the times.
        """
        if x0 is None:
            x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        return self.loss_at(model, x1, x0, self.sample_times(x1, generator), cond)

    def sample_times(self, x1: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Training times ``t = t_max * u``, ``(B,)`` in ``x1``'s dtype and device."""
        u = self.time_sampler.sample(x1.shape[0], generator=generator, device=x1.device)
        return (self.t_max * u).to(x1.dtype)

    def loss_at(
        self,
        model: nn.Module | Callable,
        x1: Tensor,
        x0: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
    ) -> Tensor:
        """Per-sample losses ``(B,)`` at given times ``t`` ``(B,)``, on
        ``x_t = alpha(t) x1 + sigma(t) x0`` (``x1``, ``x0``: ``(B, *D)``)."""
        sample = self.path.sample(x0, x1, t)
        prediction = self.prediction or getattr(model, "prediction", "velocity")
        space = self.target_space or prediction
        pred = call_field(model, sample.xt, sample.t, cond)
        if space != prediction:
            pred = self.path.convert(pred, sample.xt, sample.t, prediction, space)
        target = regression_target(self.path, sample, space)
        error = elementwise_error(pred, target, self.metric, self.c)
        return self.weight(sample.t, space).to(error.dtype) * error

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={self.path}, prediction={self.prediction!r}, "
            f"weighting={self.weighting!r}, gamma={self.gamma}, sigma_data={self.sigma_data}, "
            f"time_sampler={self.time_sampler}, t_max={self.t_max}, "
            f"target_space={self.target_space!r}, metric={self.metric!r}, c={self.c})"
        )
