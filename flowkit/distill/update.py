"""The f-distill generator update and the GAN losses, as per-sample losses.

Notation (flowkit's time: ``t = 0`` noise, ``t = 1`` data). The generator draws
``x = G_theta(z)``; it is noised on the teacher's path to ``x_t = alpha_t x + sigma_t eps``.
With ``r_t = p_t(x_t) / q_t(x_t)`` (teacher over generator) and ``h`` the divergence's weight
(:mod:`flowkit.distill.divergences`),

    grad_theta D_f(p_t || q_t) = -E[ w_t h(r_t) (s_p(x_t) - s_q(x_t)) . dx_t/dtheta ]

where ``s_p`` is the (frozen) teacher's score and ``s_q`` the fake score network's, both read
through :meth:`flowkit.paths.AffinePath.convert`. The expectation is a gradient, not a loss;
its surrogate is

    L(theta) = -mean_b sum_d [ stopgrad(c_b) * x_t,b ]_d,   c = w_t h(r_t) (s_p - s_q),

whose gradient is exactly the estimate above (``x_t`` carries the graph to ``theta``).

Time weighting ``w_t`` (:func:`time_weight`):

- ``"none"``: ``w_t = 1`` (the formula as written: exact gradient of ``E_t D_f(p_t || q_t)``).
- ``"dmd"``: ``w_t = sigma_t^2 / (alpha_t^2 mean_d |x - x1_p|)`` with ``x1_p`` the teacher's
  data prediction at ``x_t`` (Yin et al.'s DMD normalisation). Since
  ``x1_hat = (x_t + sigma_t^2 s) / alpha_t``, the update on ``x`` is then
  ``(x1_q - x1_p) / mean_d |x - x1_p|``: bounded at every noise level. With reverse KL
  (``h = 1``) and no GAN term this is variational score distillation exactly as DMD writes
  it (``0.5 ||x - stopgrad(x - grad)||^2``).

The discriminator's logit ``D(x_t)``, trained by the logistic loss on real data (label 1)
against generator samples (label 0), both noised alike, tends to ``log p_t(x_t) / q_t(x_t)``;
``r_t = exp(D)``, its logit clamped to ``[-clip, clip]`` first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from flowkit.distill.divergences import Divergence
from flowkit.paths import AffinePath
from flowkit.paths.affine import broadcast_like

__all__ = [
    "TIME_WEIGHTS",
    "discriminator_loss",
    "generator_coefficient",
    "generator_gan_loss",
    "surrogate_loss",
    "time_weight",
]

TIME_WEIGHTS = ("dmd", "none")


def time_weight(
    kind: str,
    path: AffinePath,
    t: Tensor,
    x: Tensor | None = None,
    x1_teacher: Tensor | None = None,
) -> Tensor:
    """``w_t`` of shape ``(B,)`` (see the module docstring); ``"dmd"`` needs the generator's
    output ``x`` and the teacher's data prediction ``x1_teacher`` (both ``(B, *D)``)."""
    if kind == "none":
        return torch.ones_like(t)
    if kind != "dmd":
        raise ValueError(f"unknown time weighting {kind!r}; expected one of {list(TIME_WEIGHTS)}")
    if x is None or x1_teacher is None:
        raise ValueError("the 'dmd' time weighting needs the generator output and x1_teacher")
    alpha, sigma, _, _ = path.coefficients(t.to(torch.float64))
    scale = (sigma / alpha.clamp_min(1e-6)).square().to(x.dtype)
    spread = (x - x1_teacher).detach().abs().flatten(1).mean(1)
    return scale / spread.clamp_min(1e-6)


def generator_coefficient(
    score_teacher: Tensor,
    score_fake: Tensor,
    divergence: Divergence,
    log_ratio: Tensor | None = None,
    weight: Tensor | None = None,
    clip: float = 10.0,
) -> Tensor:
    """``c = w_t h(r_t) (s_p - s_q)``, ``(B, *D)``, detached.

    Args:
        score_teacher, score_fake: ``(B, *D)`` scores at ``x_t``.
        divergence: gives ``h`` (normalised over the batch when the divergence says so).
        log_ratio: ``(B,)`` estimates of ``log r_t`` (the discriminator's logits), clamped to
            ``[-clip, clip]``; None means ``r = 1`` (no estimate: ``h(1)`` for all).
        weight: ``(B,)`` time weights ``w_t`` (None: 1).
    """
    batch = score_teacher.shape[0]
    if log_ratio is None:
        log_ratio = score_teacher.new_zeros(batch)
    ratio = log_ratio.detach().clamp(-clip, clip).exp()
    scale = divergence.weight(ratio)
    if weight is not None:
        scale = scale * weight.detach()
    diff = (score_teacher - score_fake).detach()
    return broadcast_like(scale.to(diff.dtype), diff) * diff


def surrogate_loss(xt: Tensor, coefficient: Tensor) -> Tensor:
    """Per-sample ``-sum_d stopgrad(c) x_t`` (``(B,)``): its batch mean's gradient is the
    f-divergence gradient estimate (module docstring)."""
    return -(coefficient.detach() * xt).flatten(1).sum(1)


def discriminator_loss(logit_real: Tensor, logit_fake: Tensor) -> Tensor:
    """Logistic loss ``softplus(-D(real)) + softplus(D(fake))``, per sample ``(B,)``
    (the two batches have the same size); its minimiser is ``D = log p_t / q_t``."""
    return F.softplus(-logit_real) + F.softplus(logit_fake)


def generator_gan_loss(logit_fake: Tensor) -> Tensor:
    """The non-saturating generator loss ``softplus(-D(G(z)_t))``, per sample ``(B,)``."""
    return F.softplus(-logit_fake)
