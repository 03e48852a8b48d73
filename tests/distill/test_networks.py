"""Generators from a diffusers DDPM teacher and from a VP flowkit teacher: saved and read back
as a OneStepPipeline; the fake network is a trainable copy of the teacher."""

from __future__ import annotations

from pathlib import Path

import torch

from flowkit.distill.networks import (
    DiscriminatorHead,
    FeatureHook,
    feature_module,
    generate,
    make_fake,
    make_generator,
    probe_channels,
)
from flowkit.models import MLPField


def test_generator_from_a_diffusers_ddpm_teacher(tmp_path: Path) -> None:
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    from flowkit.loading import load
    from flowkit.pipelines import OneStepPipeline

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), norm_num_groups=4,
                       up_block_types=("UpBlock2D", "UpBlock2D"), layers_per_block=1)  # fmt: skip
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(
        tmp_path / "ddpm"
    )
    teacher = load(tmp_path / "ddpm")
    generator = make_generator(teacher.field, teacher.path.name)
    assert generator.prediction == "data" and generator.config.path == "rectified"
    inner = dict(generator.unet.named_parameters())
    for name, p in teacher.field.model.named_parameters():
        assert torch.equal(inner[name], p), name  # the teacher's weights
    OneStepPipeline(generator=generator).save_pretrained(tmp_path / "run" / "pipeline")
    z = torch.randn(3, 1, 8, 8)
    loaded = load(tmp_path / "run")
    with torch.no_grad():
        torch.testing.assert_close(loaded.sample(range(3), x0=z, nfe=1).x, generate(generator, z))
    # the discriminator reads the fake UNet's mid-block
    fake = make_fake(teacher.field)
    hook = FeatureHook(feature_module(fake))
    assert probe_channels(fake, hook, (1, 8, 8)) == 16
    fake(z, torch.full((3,), 0.5))
    assert DiscriminatorHead(16, 8)(hook.take()).shape == (3,)


def test_a_vp_epsilon_teacher_gives_a_data_generator() -> None:
    teacher = MLPField(dim=2, hidden_dim=8, num_layers=1, prediction="epsilon", path="vp")
    generator = make_generator(teacher, "vp")
    assert (generator.prediction, generator.config.path) == ("data", "rectified")
    fake = make_fake(teacher)
    assert fake.prediction == "epsilon" and all(p.requires_grad for p in fake.parameters())
    assert not any(p is q for p, q in zip(fake.parameters(), teacher.parameters(), strict=True))
