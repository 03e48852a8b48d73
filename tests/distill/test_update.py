"""The generator update: on 1-D Gaussians with exact scores and density ratios it is the
gradient of the f-divergence between the noised distributions (each divergence); reverse KL
with h = 1 and no GAN term is variational score distillation (DMD) exactly."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from flowkit.distill.divergences import DIVERGENCES, divergence
from flowkit.distill.step import DistillLosses
from flowkit.distill.update import generator_coefficient, surrogate_loss
from flowkit.models import MLPField
from flowkit.paths import rectified

DATA_MEAN, DATA_STD = 0.7, 0.8  # p = N(0.7, 0.8^2); the generator is G(z) = mu + s z
ALPHA, SIGMA = 0.6, 0.4  # one noise level, x_t = alpha x + sigma eps (rectified t = 0.6)


def _log_normal(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((x - mean) ** 2 / var + torch.log(2 * math.pi * var))


def _noised(mu: torch.Tensor, s: torch.Tensor) -> tuple[tuple, tuple]:
    """(mean, variance) of p_t and of q_t."""
    p = (ALPHA * torch.tensor(DATA_MEAN, dtype=torch.float64),
         torch.tensor(ALPHA**2 * DATA_STD**2 + SIGMA**2, dtype=torch.float64))  # fmt: skip
    return p, (ALPHA * mu, ALPHA**2 * s**2 + SIGMA**2)


def _divergence_exact(div, mu: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """D_f(p_t || q_t) = int q_t f(p_t / q_t) dx by the trapezoid rule on a wide fine grid
    (spectrally accurate for these smooth, fast-decaying integrands)."""
    (mp, vp), (mq, vq) = _noised(mu, s)
    x = torch.linspace(-12.0, 12.0, 40001, dtype=torch.float64)
    log_p, log_q = _log_normal(x, mp, vp), _log_normal(x, mq, vq)
    integrand = torch.exp(log_q) * div.f(torch.exp(log_p - log_q))
    return torch.trapezoid(integrand, x)


def _surrogate_gradient(div, mu: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The surrogate's gradient, its expectation over (z, eps) by 2-D Gauss-Hermite."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    nodes = torch.tensor(nodes, dtype=torch.float64)
    weights = torch.tensor(weights / math.sqrt(2 * math.pi), dtype=torch.float64)
    z, eps = (g.reshape(-1) for g in torch.meshgrid(nodes, nodes, indexing="ij"))
    w = torch.outer(weights, weights).reshape(-1)
    xt = (ALPHA * (mu + s * z) + SIGMA * eps)[:, None]  # (B, 1)
    (mp, vp), (mq, vq) = _noised(mu.detach(), s.detach())
    score_p, score_q = -(xt - mp) / vp, -(xt - mq) / vq
    log_r = (_log_normal(xt, mp, vp) - _log_normal(xt, mq, vq))[:, 0]
    c = generator_coefficient(score_p, score_q, div, log_r, clip=50.0)
    loss = (w * surrogate_loss(xt, c)).sum()  # the exact expectation of the per-sample loss
    return torch.stack(torch.autograd.grad(loss, (mu, s)))


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_surrogate_gradient_is_the_f_divergence_gradient(name: str) -> None:
    div = dataclasses.replace(divergence(name), normalize=False)  # exact: h unnormalised
    mu = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(1.1, dtype=torch.float64, requires_grad=True)
    exact = torch.stack(torch.autograd.grad(_divergence_exact(div, mu, s), (mu, s)))
    estimate = _surrogate_gradient(div, mu, s)
    assert exact.abs().min() > 1e-3  # a gradient worth comparing
    torch.testing.assert_close(estimate, exact, rtol=1e-7, atol=1e-10)


def test_the_gaussian_check_can_fail() -> None:
    """The weight of another divergence gives a different gradient (the check has teeth)."""
    fkl = dataclasses.replace(divergence("forward_kl"), normalize=False)
    mu = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(1.1, dtype=torch.float64, requires_grad=True)
    exact = torch.stack(torch.autograd.grad(_divergence_exact(fkl, mu, s), (mu, s)))
    wrong = _surrogate_gradient(divergence("reverse_kl"), mu, s)
    assert not torch.allclose(wrong, exact, rtol=1e-2)


def _networks(seed: int = 0):
    torch.manual_seed(seed)
    make = lambda: MLPField(dim=2, hidden_dim=16, num_layers=1).double()  # noqa: E731
    return make(), make(), make()


def _vsd_gradient(generator, teacher, fake, z, eps, t) -> list[torch.Tensor]:
    """DMD as Yin et al. write it: grad = (x1_fake - x1_real) / mean|x - x1_real|,
    loss = 0.5 ||x - stopgrad(x - grad)||^2 (summed over dimensions, averaged over the batch)."""
    path = rectified()
    x = z + generator(z, torch.zeros(len(z), dtype=z.dtype))
    xt = path.sample(eps, x, t).xt.detach()
    with torch.no_grad():
        x1_real = path.convert(teacher(xt, t), xt, t, "velocity", "data")
        x1_fake = path.convert(fake(xt, t), xt, t, "velocity", "data")
        grad = (x1_fake - x1_real) / (x - x1_real).abs().mean(1, keepdim=True)
    loss = 0.5 * (x - (x - grad).detach()).square().sum(1).mean()
    return torch.autograd.grad(loss, list(generator.parameters()))


def _fdistill_gradient(generator, teacher, fake, z, eps, t, name: str, log_ratio=None):
    losses = DistillLosses(teacher, fake, None, None, rectified(), "velocity", divergence(name))
    if log_ratio is not None:  # a stand-in discriminator that returns fixed logits

        class Head(torch.nn.Module):
            def forward(self, features):
                return log_ratio

        class Hook:
            def take(self):
                return None

        losses.head, losses.hook = Head(), Hook()
    loss, _, _ = losses.generator_loss(z, eps, t, generator)
    return torch.autograd.grad(loss.mean(), list(generator.parameters()))


def test_reverse_kl_without_gan_is_vsd() -> None:
    generator, teacher, fake = _networks()
    g = torch.Generator().manual_seed(1)
    z, eps = (
        torch.randn(64, 2, generator=g, dtype=torch.float64),
        torch.randn(64, 2, generator=g, dtype=torch.float64),
    )
    t = 0.02 + 0.96 * torch.rand(64, generator=g, dtype=torch.float64)
    vsd = _vsd_gradient(generator, teacher, fake, z, eps, t)
    ours = _fdistill_gradient(generator, teacher, fake, z, eps, t, "reverse_kl")
    for a, b in zip(ours, vsd, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # the check can fail: JS with a density ratio away from 1 weights samples differently
    log_ratio = torch.linspace(-2, 2, 64, dtype=torch.float64)
    js = _fdistill_gradient(generator, teacher, fake, z, eps, t, "js", log_ratio)
    assert not all(torch.allclose(a, b, rtol=1e-3) for a, b in zip(js, vsd, strict=True))
