r"""Time weightings of the diffusion losses, derived for each of flowkit's prediction types.

On an affine path ``x_t = a x1 + s x0`` (``a = alpha(t)``, ``s = sigma(t)``, primes are
``d/dt``, ``det = a s' - a' s``, negative on every flowkit path) the signal-to-noise ratio is

    SNR(t) = a^2 / s^2.

At a fixed point ``(x_t, t)`` every prediction is an affine function of the data prediction
``x̂1`` (:mod:`flowkit.paths.conversions`), so the squared error of each is a multiple
``c_P(t)`` of the data-space error ``||x̂1 - x1||^2``:

    epsilon   ε = (x_t - a x1) / s                       c_eps      = SNR
    score     -ε / s                                     c_score    = SNR / s^2
    velocity  dx_t/dt = a' x1 + s' ε
                      = -(det / s) x1 + (s' / s) x_t     c_velocity = (det / s)^2
    x0        x1 (the data)                              c_x0       = 1

A *weighting* is a data-space weight ``w(t)``, the form of Hang et al. (2023),
``L = w(t) ||x̂1 - x1||^2``. Measured in the space ``P`` of a prediction (its own regression
target), the same loss is ``lambda_P(t) ||pred_P - target_P||^2`` with
``lambda_P = w / c_P``. The weightings, with ``lambda_P`` written so that it stays finite
wherever it has a finite limit:

- ``"uniform"``: ``lambda_P = 1``, plain MSE on the space's own target (``w = c_P``: DDPM's
  "simple" loss for epsilon, Liu et al.'s for velocity).
- ``"snr"``: ``w = SNR``, the epsilon-MSE whatever the parameterisation:
  ``lambda_eps = 1``, ``lambda_x0 = SNR``, ``lambda_score = s^2`` (Song et al.'s
  ``lambda(t) = sigma^2`` for score matching), ``lambda_velocity = a^2 / det^2``.
- ``"min_snr"``: min-SNR-gamma (Hang et al. 2023, ``gamma = 5``), ``w = min(SNR, gamma)``:
  ``lambda_x0 = min(SNR, gamma)``, ``lambda_eps = min(SNR, gamma) / SNR = min(1, gamma / SNR)``,
  ``lambda_score = s^2 min(1, gamma / SNR)``,
  ``lambda_velocity = min(a^2, gamma s^2) / det^2``.
  Hang et al.'s v-prediction weight ``min(SNR, gamma) / (SNR + 1)`` is for Salimans & Ho's
  ``v_SH = a ε - s x1`` on a VP path (``a^2 + s^2 = 1``). flowkit's velocity is ``dx_t/dt``;
  on VP ``s' = -a a' / s``, so ``dx_t/dt = -(a' / s) v_SH`` and ``det = -a' / s``: the
  velocity weight is theirs times ``(s / a')^2``, which is ``min(a^2, gamma s^2) / det^2``.
- ``"edm"``: Karras et al. (2022) ``lambda(sigma) = (sigma^2 + sigma_data^2) /
  (sigma sigma_data)^2`` on the data prediction, with EDM's noise level ``sigma = s / a`` (the
  state ``x_t / a = x1 + (s / a) x0`` is a VE process): ``w = SNR + 1 / sigma_data^2``,
  ``lambda_eps = 1 + s^2 / (sigma_data^2 a^2)``, ``lambda_score = s^2 lambda_eps``,
  ``lambda_velocity = (a^2 + s^2 / sigma_data^2) / det^2``. It is ``1 / c_out^2`` of EDM's
  preconditioning (:class:`~flowkit.objectives.preconditioning.EDMPreconditioner`), so a
  preconditioned network's raw output is trained with unit weight.

Where a weight is infinite by nature it is returned as ``inf``: the data end ``s = 0`` for
``lambda_x0`` under ``"snr"`` and ``"edm"`` (the data prediction is then exact, ``c_P`` of
the other spaces is infinite); ``a = 0`` (the rectified and cosine paths at ``t = 0``) for
``lambda_eps`` and ``lambda_score`` under ``"edm"``. :class:`~flowkit.objectives.DiffusionLoss`
keeps training times below ``s = 0``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowkit.paths import AffinePath, check_prediction

WEIGHTINGS = ("uniform", "snr", "min_snr", "edm")


def check_weighting(weighting: str, gamma: float, sigma_data: float) -> None:
    """Raise ``ValueError`` naming an unknown weighting or a parameter out of range."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; expected one of {list(WEIGHTINGS)}")
    if not (gamma > 0 and math.isfinite(gamma)):
        raise ValueError(f"gamma={gamma} must be a finite number > 0 (the min-SNR clamp)")
    if not (sigma_data > 0 and math.isfinite(sigma_data)):
        raise ValueError(f"sigma_data={sigma_data} must be a finite number > 0 (the data std)")


def snr(path: AffinePath, t: Tensor) -> Tensor:
    """``SNR(t) = alpha(t)^2 / sigma(t)^2``, float64 ``(B,)`` for ``t (B,)`` (inf where
    ``sigma = 0``)."""
    alpha, sigma, _, _ = path.coefficients(t.to(torch.float64))
    return alpha**2 / sigma**2


def loss_weight(
    path: AffinePath,
    t: Tensor,
    space: str,
    weighting: str,
    gamma: float = 5.0,
    sigma_data: float = 0.5,
) -> Tensor:
    """``lambda_P(t)``: the factor of the squared error measured in ``space`` (see above).

    Args:
        path: the affine path.
        t: ``(B,)`` times.
        space: the prediction type whose target the error is measured against
            (``"velocity"``, ``"epsilon"``, ``"data"`` or ``"score"``).
        weighting: one of :data:`WEIGHTINGS`.
        gamma: the min-SNR clamp (``"min_snr"`` only).
        sigma_data: the data standard deviation (``"edm"`` only).

    Returns:
        float64 ``(B,)`` weights on ``t``'s device.
    """
    space = check_prediction(space)
    check_weighting(weighting, gamma, sigma_data)
    a, s, da, ds = path.coefficients(t.to(torch.float64))
    if weighting == "uniform":
        return torch.ones_like(a)
    det_squared = (a * ds - da * s) ** 2
    if weighting == "snr":
        weights = {"data": a**2 / s**2, "epsilon": torch.ones_like(a), "score": s**2}
        velocity_numerator = a**2
    elif weighting == "min_snr":
        eps_weight = torch.clamp(gamma * s**2 / a**2, max=1.0)  # min(1, gamma / SNR)
        weights = {
            "data": torch.clamp(a**2 / s**2, max=gamma),
            "epsilon": eps_weight,
            "score": s**2 * eps_weight,
        }
        velocity_numerator = torch.minimum(a**2, gamma * s**2)
    else:  # edm
        eps_weight = 1 + s**2 / (sigma_data**2 * a**2)
        weights = {
            "data": a**2 / s**2 + 1 / sigma_data**2,
            "epsilon": eps_weight,
            "score": s**2 * eps_weight,
        }
        velocity_numerator = a**2 + s**2 / sigma_data**2
    if space == "velocity":
        return velocity_numerator / det_squared
    return weights[space]
