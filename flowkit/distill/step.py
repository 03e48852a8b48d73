"""One f-distill step's losses over the three networks (the loop lives in
:mod:`flowkit.distill.trainer`; this module is the math, shared by the loop, the tests and the
benchmark).

Critic update (fake score network and discriminator head, generator samples detached)::

    x = stopgrad G(z),  x_t = alpha_t x + sigma_t eps,  y_t = alpha_t y + sigma_t eps'  (y: data)
    L_critic = mean_b ||fake(x_t, t) - target||^2 / D  +  disc_weight * mean_b BCE(D(y_t), D(x_t))

with ``target`` the teacher's own regression target for its prediction on its path
(velocity ``dx_t``, epsilon ``eps``, data ``x``, score ``-eps / sigma_t``) and ``D`` the head on
the fake network's features: one fake forward over ``[x_t; y_t]`` gives both.

Generator update::

    x = G(z),  x_t = alpha_t x + sigma_t eps,
    L_gen = mean_b [ -sum_d stopgrad(c) x_t ] + gan_weight * mean_b softplus(-D(x_t)),
    c = w_t h(r_t) (s_teacher(x_t) - s_fake(x_t)),  log r_t = D(x_t)

(:mod:`flowkit.distill.update`). Noise levels ``t ~ U[t_min, t_max]`` (default
``[0.02, 0.98]`` in flowkit's time, ``t = 1`` the data): near ``t = 1`` the score of a
rectified or VP path, ``-eps / sigma_t``, blows up as ``sigma_t -> 0`` and near ``t = 0`` the
noised samples hold almost nothing of ``x``; DMD's ``[0.02 T, 0.98 T]`` is the same choice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flowkit.distill.divergences import Divergence
from flowkit.distill.networks import DiscriminatorHead, FeatureHook, generate
from flowkit.distill.update import (
    discriminator_loss,
    generator_coefficient,
    generator_gan_loss,
    surrogate_loss,
    time_weight,
)
from flowkit.paths import AffinePath

__all__ = ["DistillLosses", "frozen"]


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Within the block, ``module``'s parameters take no gradient (the input still does):
    the generator's backward through the fake network computes no weight gradients there."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@dataclass
class DistillLosses:
    """The losses of one step, over the frozen teacher, the fake network and its head.

    Attributes:
        teacher: the frozen teacher field (``LoadedModel.field``).
        fake: the fake score network (same path and prediction as the teacher).
        head: the discriminator head, or None (no GAN: reverse KL only).
        hook: records the fake network's features for ``head``.
        path, prediction: the teacher's path and prediction.
        divergence: the f-divergence (its ``h``).
        weighting: ``"dmd"`` or ``"none"`` (:func:`flowkit.distill.update.time_weight`).
        t_min, t_max: the range of noise levels (flowkit time).
        gan_weight: weight of the generator's GAN loss.
        disc_weight: weight of the discriminator's loss in the critic update.
        clip: ``|log r|`` is clamped to this before ``h``.
    """

    teacher: nn.Module
    fake: nn.Module
    head: DiscriminatorHead | None
    hook: FeatureHook | None
    path: AffinePath
    prediction: str
    divergence: Divergence
    weighting: str = "dmd"
    t_min: float = 0.02
    t_max: float = 0.98
    gan_weight: float = 0.0
    disc_weight: float = 0.0
    clip: float = 10.0

    def times(self, batch: int, generator: torch.Generator, device: torch.device) -> Tensor:
        """``(B,)`` noise levels uniform on ``[t_min, t_max]``."""
        u = torch.rand(batch, generator=generator, device=device)
        return self.t_min + (self.t_max - self.t_min) * u

    def noised(self, x: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """``x_t = alpha_t x + sigma_t eps`` on the teacher's path."""
        return self.path.sample(eps, x, t).xt

    def _fake_forward(self, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor | None]:
        """The fake network's prediction and, with a head, its logits ``(B,)``."""
        out = self.fake(xt, t)
        logits = None
        if self.head is not None:
            logits = self.head(self.hook.take())
        return out, logits

    def generator_loss(self, z: Tensor, eps: Tensor, t: Tensor, generator: nn.Module):
        """``(loss (B,), x, stats)``: the generator's per-sample loss, its samples ``G(z)``
        (for the critic update to reuse, detached) and detached statistics."""
        x = generate(generator, z)
        xt = self.noised(x, eps, t)
        with torch.no_grad():
            out_teacher = self.teacher(xt.detach(), t)
        score_teacher = self.path.convert(out_teacher, xt.detach(), t, self.prediction, "score")
        use_gan = self.head is not None and self.gan_weight > 0
        with frozen(self.fake), frozen(self.head) if self.head is not None else _nothing():
            if use_gan:
                out_fake, logits = self._fake_forward(xt, t)
            else:
                with torch.no_grad():
                    out_fake, logits = self._fake_forward(xt.detach(), t)
        score_fake = self.path.convert(out_fake.detach(), xt.detach(), t, self.prediction, "score")
        weight = None
        if self.weighting == "dmd":
            x1_teacher = self.path.convert(out_teacher, xt.detach(), t, self.prediction, "data")
            weight = time_weight("dmd", self.path, t, x.detach(), x1_teacher)
        else:
            weight = time_weight(self.weighting, self.path, t)
        log_ratio = None if logits is None else logits.detach()
        coefficient = generator_coefficient(
            score_teacher, score_fake, self.divergence, log_ratio, weight, self.clip
        )
        loss = surrogate_loss(xt, coefficient)
        stats = {"gen_coef_norm": coefficient.flatten(1).norm(dim=1).mean().detach()}
        if use_gan:
            gan = generator_gan_loss(logits)
            loss = loss + self.gan_weight * gan
            stats["gen_gan"] = gan.mean().detach()
        if log_ratio is not None:
            stats["log_ratio"] = log_ratio.mean()
        return loss, x, stats

    def target(self, x: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """The teacher's regression target for its prediction at ``x_t``."""
        sample = self.path.sample(eps, x, t)
        if self.prediction == "velocity":
            return sample.dxt
        if self.prediction == "epsilon":
            return eps
        if self.prediction == "data":
            return x
        return self.path.convert(eps, sample.xt, t, "epsilon", "score")

    def critic_loss(
        self, x: Tensor, real: Tensor | None, eps: Tensor, eps_real: Tensor | None, t: Tensor
    ):
        """``(loss (B,), stats)``: denoising loss of the fake network on the (detached)
        generator samples ``x`` plus ``disc_weight`` times the discriminator loss on ``real``
        data against ``x`` (all noised at the same levels ``t``)."""
        x = x.detach()
        xt = self.noised(x, eps, t)
        use_disc = self.head is not None and real is not None and self.disc_weight > 0
        if use_disc:
            yt = self.noised(real, eps_real, t)
            out, logits = self._fake_forward(torch.cat([xt, yt]), torch.cat([t, t]))
            out = out[: x.shape[0]]
        else:
            out, logits = self.fake(xt, t), None
            if self.hook is not None:
                self.hook.features = None
        dsm = (out - self.target(x, eps, t)).square().flatten(1).mean(1)
        stats = {"fake_dsm": dsm.mean().detach()}
        loss = dsm
        if use_disc:
            fake_logit, real_logit = logits.chunk(2)
            disc = discriminator_loss(real_logit, fake_logit)
            loss = loss + self.disc_weight * disc
            stats["disc"] = disc.mean().detach()
            accuracy = ((real_logit > 0).float().mean() + (fake_logit < 0).float().mean()) / 2
            stats["disc_acc"] = accuracy.detach()
        return loss, stats


@contextmanager
def _nothing() -> Iterator[None]:
    yield
