r"""Rectified Diffusion (Wang et al. 2024): the diffusion loss on paired (noise, data) data.

A pretrained diffusion model's deterministic sampler maps noise ``z`` to data ``x1``;
Rectified Diffusion retrains on these pairs with the model's own path and parameterisation,
``x_t = alpha(t) x1 + sigma(t) z`` with the *paired* noise ``z`` in place of fresh noise. The
network's prediction (epsilon in the paper) is turned into the data prediction
``x̂1 = convert(pred, x_t, t)`` and the loss is the elementwise pseudo-Huber distance

    L_i = mean_D [ sqrt((x̂1 - x1)^2 + c^2) - c ],   c = 1e-3,

averaged over the ``D`` elements of a sample, as the authors' code averages over all
elements (a per-sample mean keeps the scale independent of resolution; ``D * L_i`` is the
sum). That is :class:`~flowkit.objectives.DiffusionLoss` with ``target_space="data"``,
``metric="pseudo_huber"`` and ``c = 1e-3`` as defaults, and paired noise required: with
fresh noise it would silently be plain diffusion. Where the pairs' paths do not cross, the
minimiser's data prediction is constant along each path (``x1``), and DDIM (eta = 0), whose
step holds the data prediction fixed, follows it exactly at any number of steps: the path is
straight in ``(x / alpha, sigma / alpha)``, though curved in ``x`` on VP.

Phased variant (``phases``). Time is split at boundaries ``0 = b_0 < b_1 < ... < b_K`` and
the pairs hold the teacher's ODE state ``y_k`` at every boundary (``xb``, ``(B, K + 1, *D)``;
:func:`flowkit.reflow.generate_pairs` with ``boundaries``), so only the segment
``y_k -> y_{k+1}`` of each phase must be straightened, not the whole map from noise to data.
Within phase ``k`` the target is the first-order (DDIM) path through both ends,
``x_t = alpha(t) D_k + sigma(t) E_k`` for ``t in [b_k, b_{k+1}]``, whose data and noise
components solve ``alpha_j D_k + sigma_j E_k = y_j`` at ``j = k, k + 1`` (``alpha_j =
alpha(b_j)``, ``sigma_j = sigma(b_j)``):

    D_k = (sigma_{k+1} y_k - sigma_k y_{k+1}) / det,
    E_k = (alpha_k y_{k+1} - alpha_{k+1} y_k) / det,
    det = alpha_k sigma_{k+1} - alpha_{k+1} sigma_k

(``det < 0`` as alpha / sigma increases with ``t``). A time ``t`` is drawn as in the
unphased loss, its phase ``k`` is the one with ``b_k <= t < b_{k+1}``, and the loss is the
unphased one on ``(E_k, D_k)``: ``x̂1`` is pulled towards ``D_k``. A DDIM step from ``b_k`` to
``b_{k+1}`` with the data prediction ``D_k`` lands exactly on ``y_{k+1}``, so ``K`` DDIM steps
on the boundaries reproduce the teacher's states. With ``K = 1`` and ``y = (z, x1)`` this is
the unphased loss up to the VP path's ``alpha(0) ≈ 0.007``: ``E_0 = (z - alpha(0) x1) /
sigma(0)`` is the noise that puts ``x_0`` exactly on the teacher's start ``z``. Unlike
PeRFlow, whose phase starts are real data noised to ``b_k``, the phase starts here are the
teacher's own trajectory from noise (one stored pass of the teacher, no online solver).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from flowkit.objectives.diffusion import DiffusionLoss
from flowkit.objectives.time_samplers import TimeSampler
from flowkit.paths import AffinePath


def phase_boundaries(phases: int | Sequence[float]) -> Tensor:
    """Float64 boundaries ``(K + 1,)``: ``K`` equal phases of ``[0, 1]`` for an int, or the
    given increasing times, which must start at 0 (the noise end).

    Raises:
        ValueError: fewer than one phase, or times that do not increase from 0 within [0, 1].
    """
    if isinstance(phases, int):
        if phases < 1:
            raise ValueError(f"phases={phases} must be >= 1")
        return torch.arange(phases + 1, dtype=torch.float64) / phases
    times = torch.as_tensor([float(b) for b in phases], dtype=torch.float64)
    if (
        times.numel() < 2
        or times[0] != 0
        or times[-1] > 1
        or not bool((times[1:] > times[:-1]).all())
    ):
        raise ValueError(
            f"phase boundaries {list(phases)} must increase from 0 to at most 1, at least 2 times"
        )
    return times


class RectifiedDiffusionLoss(DiffusionLoss):
    """``loss(model, x1, x0, cond=None, generator=None, xb=None) -> Tensor (B,)`` on pairs.

    The arguments are :class:`~flowkit.objectives.DiffusionLoss`'s, with Rectified
    Diffusion's defaults ``target_space="data"``, ``metric="pseudo_huber"``, ``c=1e-3``, plus

    Args:
        phases: ``None`` (the whole map, the default), a number ``K`` of equal phases of
            ``[0, 1]``, or the boundary times ``[0, b_1, ..., b_K]``; they must be the
            boundaries the pairs were generated with (their manifest's ``boundaries``).

    Attributes:
        boundaries: the float64 ``(K + 1,)`` phase boundaries, or None.

    Raises:
        ValueError: when called without the paired noise ``x0``, or phased without ``xb``
            (or with ``xb`` of the wrong shape), or when the last boundary is before ``t_max``.
    """

    needs_pairs = True

    def __init__(
        self,
        path: AffinePath | None = None,
        prediction: str | None = None,
        weighting: str = "uniform",
        gamma: float = 5.0,
        sigma_data: float = 0.5,
        time_sampler: TimeSampler | None = None,
        t_max: float | None = None,
        target_space: str | None = "data",
        metric: str = "pseudo_huber",
        c: float = 1e-3,
        phases: int | Sequence[float] | None = None,
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
        self.boundaries = None if phases is None else phase_boundaries(phases)
        if self.boundaries is not None and float(self.boundaries[-1]) < self.t_max:
            raise ValueError(
                f"the last phase boundary {float(self.boundaries[-1])} lies before t_max="
                f"{self.t_max}: training times there would belong to no phase"
            )

    def __call__(
        self,
        model: nn.Module | Callable,
        x1: Tensor,
        x0: Tensor | None = None,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
        xb: Tensor | None = None,
    ) -> Tensor:
        """Per-sample losses ``(B,)``; ``xb`` ``(B, K + 1, *D)``: the teacher's states at the
        phase boundaries (phased only; ``x0`` and ``x1`` are then ``xb``'s first and last)."""
        if x0 is None:
            raise ValueError(
                "rectified diffusion trains on paired (noise, data) samples, but x0=None: fresh "
                "noise would make it plain diffusion. Train on reflow pairs (data.name='pairs' "
                "or 'teacher'), or use objective.kind='diffusion'"
            )
        if self.boundaries is None:
            return super().__call__(model, x1, x0=x0, cond=cond, generator=generator)
        t = self.sample_times(x1, generator)
        noise, data = self.phase_targets(xb, t, x1.shape)
        return self.loss_at(model, data, noise, t, cond)

    def phase_targets(
        self, xb: Tensor | None, t: Tensor, shape: torch.Size
    ) -> tuple[Tensor, Tensor]:
        """``(E_k, D_k)``, each ``(B, *D)``, of the phase holding each time ``t`` ``(B,)``."""
        phases = len(self.boundaries) - 1
        if xb is None or tuple(xb.shape) != (shape[0], phases + 1, *shape[1:]):
            got = None if xb is None else tuple(xb.shape)
            raise ValueError(
                f"phased rectified diffusion ({phases} phases) needs the teacher's states at the "
                f"boundaries, xb of shape {(shape[0], phases + 1, *shape[1:])}, got {got}: "
                "generate the pairs with boundaries=loss.boundaries"
            )
        inner = self.boundaries[1:-1].to(t.device)
        k = torch.searchsorted(inner, t.to(torch.float64), right=True)  # (B,) in [0, K - 1]
        alpha, sigma, _, _ = self.path.coefficients(self.boundaries.to(t.device))
        a0, s0, a1, s1 = (
            c.to(xb.dtype).reshape(-1, *[1] * (len(shape) - 1))
            for c in (alpha[k], sigma[k], alpha[k + 1], sigma[k + 1])
        )
        rows = torch.arange(shape[0], device=xb.device)
        start, end = xb[rows, k], xb[rows, k + 1]
        det = a0 * s1 - a1 * s0
        return (a0 * end - a1 * start) / det, (s1 * start - s0 * end) / det

    def __repr__(self) -> str:
        phases = None if self.boundaries is None else self.boundaries.tolist()
        return super().__repr__()[:-1] + f", phases={phases})"
