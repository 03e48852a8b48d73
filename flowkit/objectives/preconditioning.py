r"""EDM preconditioning (Karras et al. 2022, Table 1): a raw network as a data predictor.

EDM writes a noisy state as ``x~ = x1 + sigma n`` (a VE process) and its denoiser as

    D(x~; sigma) = c_skip(sigma) x~ + c_out(sigma) F(c_in(sigma) x~; c_noise(sigma)),

    c_skip  = sigma_d^2 / (sigma^2 + sigma_d^2),
    c_out   = sigma sigma_d / sqrt(sigma^2 + sigma_d^2),
    c_in    = 1 / sqrt(sigma^2 + sigma_d^2),
    c_noise = ln(sigma) / 4,

with ``sigma_d = 0.5`` (the data std of images in ``[-1, 1]``), so that ``F``'s input and its
regression target ``(x1 - c_skip x~) / c_out`` both have unit variance. EDM's loss weight
``lambda(sigma) = 1 / c_out^2`` (``weighting="edm"`` of
:class:`~flowkit.objectives.DiffusionLoss`) then trains ``F`` with unit weight.

On any flowkit affine path ``x_t = a x1 + s x0`` the same holds for ``x~ = x_t / a`` and
``sigma = s / a`` (on the VE path ``a = 1`` and ``sigma = s``). Written with
``r = sqrt(s^2 + sigma_d^2 a^2)`` the denoiser stays finite where ``a = 0``:

    D(x_t, t) = (sigma_d^2 a / r^2) x_t + (s sigma_d / r) F(x_t / r, c_noise),

which is the formula above term by term (``c_skip x~ = sigma_d^2 a x_t / r^2``,
``c_out = s sigma_d / r``, ``c_in x~ = x_t / r``). ``c_noise`` uses ``sigma`` with ``a`` and
``s`` clamped at ``1e-6``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowkit.paths import AffinePath, ve
from flowkit.paths.affine import broadcast_like
from flowkit.paths.conversions import MIN_SCALE


def _edm_sigma(a: Tensor, s: Tensor) -> Tensor:
    """EDM's noise level ``sigma = s / a``, with both clamped at ``MIN_SCALE``."""
    return s.clamp_min(MIN_SCALE) / a.clamp_min(MIN_SCALE)


class EDMPreconditioner(nn.Module):
    """Wraps a raw network ``net(x, c_noise, **cond)`` into a ``"data"`` predictor field.

    The result is a flowkit field ``field(x, t, class_labels=None) -> (B, *D)`` with
    ``prediction = "data"`` and ``path`` set, so :func:`flowkit.solvers.sample_ode` and the other
    samplers read it without further arguments, and a
    :class:`~flowkit.objectives.DiffusionLoss` trains it (``weighting="edm"`` for EDM's loss).
    See the module docstring for the math.

    Args:
        net: the raw network ``F``, called as ``net(c_in x~, c_noise)`` (plus
            ``class_labels=`` when given) with ``c_noise`` of shape ``(B,)``; a flowkit field
            (``UNetField``, ``MLPField``) works, its "time" input then receives ``c_noise``.
        path: the affine path (VE by default, EDM's own setting).
        sigma_data: ``sigma_d``, the data standard deviation, > 0.
    """

    prediction = "data"

    def __init__(
        self,
        net: nn.Module | Callable[..., Tensor],
        path: AffinePath | None = None,
        sigma_data: float = 0.5,
    ) -> None:
        super().__init__()
        if not (sigma_data > 0 and math.isfinite(sigma_data)):
            raise ValueError(f"sigma_data={sigma_data} must be a finite number > 0")
        self.net = net
        self.path = path or ve()
        self.sigma_data = float(sigma_data)

    def scalings(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """EDM's ``(c_skip, c_out, c_in, c_noise)`` at ``sigma = s / a``, each float64 ``(B,)``.

        These act on EDM's state ``x~ = x_t / a``; :meth:`forward` applies them to ``x_t``.
        """
        a, s, _, _ = self.path.coefficients(t.to(torch.float64))
        sigma = _edm_sigma(a, s)
        sd2 = self.sigma_data**2
        norm = torch.sqrt(sigma**2 + sd2)
        return sd2 / norm**2, sigma * self.sigma_data / norm, 1 / norm, torch.log(sigma) / 4

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """The data prediction ``D(x_t, t)``.

        Args:
            x: ``(B, *D)`` states on the path.
            t: ``(B,)`` times.
            class_labels: passed to ``net`` when given.

        Returns:
            ``(B, *D)``, ``x``'s dtype.
        """
        a, s, _, _ = self.path.coefficients(t.to(torch.float64))
        sd = self.sigma_data
        r = torch.sqrt(s**2 + sd**2 * a**2)
        skip, out, scale_in = sd**2 * a / r**2, s * sd / r, 1 / r
        c_noise = torch.log(_edm_sigma(a, s)) / 4
        skip, out, scale_in = (broadcast_like(c, x).to(x.dtype) for c in (skip, out, scale_in))
        cond = {} if class_labels is None else {"class_labels": class_labels}
        raw = self.net(scale_in * x, c_noise.to(x.dtype), **cond)
        return skip * x + out * raw

    def extra_repr(self) -> str:
        return f"path={self.path}, sigma_data={self.sigma_data}"
