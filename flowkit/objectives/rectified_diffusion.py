r"""Rectified Diffusion (Wang et al. 2024): the diffusion loss on paired (noise, data) data.

A pretrained diffusion model's deterministic sampler maps noise ``z`` to data ``x1``;
Rectified Diffusion retrains on these pairs with the model's own path and parameterisation,
``x_t = alpha(t) x1 + sigma(t) z`` with the *paired* noise ``z`` in place of fresh noise. The
network's prediction (epsilon in the paper) is turned into the data prediction
``x̂1 = convert(pred, x_t, t)`` and the loss is the elementwise pseudo-Huber distance

    L_i = mean_D [ sqrt((x̂1 - x1)^2 + c^2) - c ],   c = 1e-3,

averaged over the ``D`` elements of a sample, as the authors' code averages over all
elements (a per-sample mean keeps the scale independent of resolution; ``D * L_i`` is the
sum). That is :class:`~flowkit.objectives.DiffusionLoss` with ``target_space="x0"``,
``metric="pseudo_huber"`` and ``c = 1e-3`` as defaults, and paired noise required: with
fresh noise it would silently be plain diffusion.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowkit.objectives.diffusion import DiffusionLoss
from flowkit.objectives.time_samplers import TimeSampler
from flowkit.paths import AffinePath


class RectifiedDiffusionLoss(DiffusionLoss):
    """``loss(model, x1, x0, cond=None, generator=None) -> Tensor (B,)`` on paired data.

    The arguments are :class:`~flowkit.objectives.DiffusionLoss`'s, with Rectified
    Diffusion's defaults ``target_space="x0"``, ``metric="pseudo_huber"``, ``c=1e-3``.

    Raises:
        ValueError: when called without the paired noise ``x0``.
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
        target_space: str | None = "x0",
        metric: str = "pseudo_huber",
        c: float = 1e-3,
    ) -> None:
        super().__init__(
            path=path,
            prediction=prediction,
            weighting=weighting,
            gamma=gamma,
            sigma_data=sigma_data,
            time_sampler=time_sampler,
            t_max=t_max,
            target_space=target_space,
            metric=metric,
            c=c,
        )

    def __call__(
        self,
        model: nn.Module | Callable,
        x1: Tensor,
        x0: Tensor | None = None,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if x0 is None:
            raise ValueError(
                "rectified diffusion trains on paired (noise, data) samples, but x0=None: fresh "
                "noise would make it plain diffusion. Train on reflow pairs (data.name='pairs' "
                "or 'teacher'), or use objective.kind='diffusion'"
            )
        return super().__call__(model, x1, x0=x0, cond=cond, generator=generator)
