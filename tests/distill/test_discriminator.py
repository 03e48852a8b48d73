"""The discriminator head on the fake network's hooked features: trained by the critic loss
(real vs generator samples, both noised), its logit recovers log p_t / q_t."""

from __future__ import annotations

import math

import pytest
import torch

from flowkit.distill.divergences import divergence
from flowkit.distill.networks import DiscriminatorHead, FeatureHook, feature_module, probe_channels
from flowkit.distill.step import DistillLosses
from flowkit.models import MLPField
from flowkit.paths import rectified

REAL, FAKE = (0.5, 0.3), (-0.3, 0.5)  # (mean, std) of the two 1-D Gaussians
T = 0.8  # x_t = 0.8 x + 0.2 eps


def _noised(mean: float, std: float) -> tuple[float, float]:
    return T * mean, (T**2 * std**2 + (1 - T) ** 2) ** 0.5


def _log_normal(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi))


def _fit(steps: int = 200) -> tuple[DistillLosses, MLPField]:
    torch.manual_seed(0)
    fake = MLPField(dim=1, hidden_dim=32, num_layers=2)
    hook = FeatureHook(feature_module(fake))
    head = DiscriminatorHead(probe_channels(fake, hook, (1,)), hidden=32)
    losses = DistillLosses(fake, fake, head, hook, rectified(), "velocity",
                           divergence("js"), disc_weight=1.0)  # fmt: skip
    optimizer = torch.optim.Adam([*fake.parameters(), *head.parameters()], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    t = torch.full((256,), T)
    for _ in range(steps):
        real = REAL[0] + REAL[1] * torch.randn(256, 1, generator=g)
        gen = FAKE[0] + FAKE[1] * torch.randn(256, 1, generator=g)
        eps, eps_real = torch.randn(256, 1, generator=g), torch.randn(256, 1, generator=g)
        loss, _ = losses.critic_loss(gen, real, eps, eps_real, t)
        optimizer.zero_grad()
        loss.mean().backward()
        optimizer.step()
    return losses, fake


def test_logit_recovers_the_log_density_ratio() -> None:
    losses, fake = _fit()
    x = torch.linspace(-0.6, 0.8, 57)[:, None]  # where both noised densities have mass
    with torch.no_grad():
        fake(x, torch.full((len(x),), T))
        logit = losses.head(losses.hook.take())
    exact = (_log_normal(x, *_noised(*REAL)) - _log_normal(x, *_noised(*FAKE)))[:, 0]
    error = (logit - exact).abs().mean()
    assert exact.abs().mean() > 1.0  # the ratio is far from 1 over the grid
    assert error < 0.25, f"mean |logit - log r| = {error:.3f}"
    assert (logit + exact).abs().mean() > 1.0  # the opposite ratio is far off (can fail)


def test_hook_and_feature_module_errors() -> None:
    fake = MLPField(dim=2, hidden_dim=8, num_layers=1)
    hook = FeatureHook(feature_module(fake))
    with pytest.raises(RuntimeError, match="run the fake network first"):
        hook.take()
    assert probe_channels(fake, hook, (2,)) == 8
    with pytest.raises(ValueError, match="not a submodule"):
        feature_module(fake, "blocks.7")
    hook.remove()
