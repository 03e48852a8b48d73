"""Loaded diffusers teachers: DDIM / flow-matching sampling matches diffusers' own loops."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
    UNet2DModel,
)

from flowkit.models.teachers import (
    Teacher,
    ddim_grid,
    flow_grid,
    load_diffusers_teacher,
)
from flowkit.paths.discrete import discrete_vp, time_of, timestep_of
from flowkit.solvers.ode import sample_ode


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def tiny_unet() -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )


def save_ddpm(directory, prediction_type: str = "epsilon"):
    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type)
    DDPMPipeline(unet=tiny_unet(), scheduler=scheduler).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def ddpm_dirs(tmp_path_factory):
    return {
        kind: save_ddpm(tmp_path_factory.mktemp(kind), kind)
        for kind in ("epsilon", "v_prediction", "sample")
    }


def noise() -> torch.Tensor:
    return torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def diffusers_ddim(directory, spacing: str, steps: int) -> tuple[torch.Tensor, DDIMScheduler]:
    unet = UNet2DModel.from_pretrained(directory / "unet", use_safetensors=True)
    config = DDPMScheduler.from_pretrained(directory / "scheduler").config
    scheduler = DDIMScheduler.from_config(
        config, clip_sample=False, set_alpha_to_one=True, timestep_spacing=spacing
    )
    scheduler.set_timesteps(steps)
    x = noise()
    with torch.no_grad():
        for tau in scheduler.timesteps:
            x = scheduler.step(unet(x, tau).sample, tau, x, eta=0.0).prev_sample
    return x, scheduler


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_matches_diffusers(ddpm_dirs, prediction_type, spacing):
    directory = ddpm_dirs[prediction_type]
    expected, scheduler = diffusers_ddim(directory, spacing, 10)
    teacher = load_diffusers_teacher(directory)
    assert teacher.prediction == ("data" if prediction_type == "sample" else "epsilon")
    grid = ddim_grid(teacher, 10, spacing=spacing, steps_offset=scheduler.config.steps_offset)
    assert grid == ddim_grid(scheduler)
    result = sample_ode(
        teacher, noise(), grid=grid, method="ddim", path=teacher.path, prediction=teacher.prediction
    )
    assert result.nfe == 10
    torch.testing.assert_close(result.x, expected, rtol=1e-4, atol=1e-4)


def test_flow_matching_teacher_matches_diffusers_euler(tmp_path):
    unet = tiny_unet()
    unet.save_pretrained(tmp_path / "unet")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(tmp_path / "scheduler")
    teacher = load_diffusers_teacher(tmp_path)
    assert teacher.prediction == "velocity" and teacher.path.name == "rectified"

    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path / "scheduler")
    scheduler.set_timesteps(sigmas=[1.0, 0.8, 0.55, 0.3, 0.1])
    grid = flow_grid(scheduler)
    x = noise()
    with torch.no_grad():
        for timestep in scheduler.timesteps:
            x = scheduler.step(unet(x, timestep).sample, timestep, x).prev_sample
    result = sample_ode(teacher, noise(), grid=grid, method="euler")
    assert result.nfe == 5 and grid[-1] == 1.0
    torch.testing.assert_close(result.x, x, rtol=1e-4, atol=1e-4)


def test_discrete_vp_hits_table_and_is_monotone():
    abar = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod
    path = discrete_vp(abar)
    taus = torch.arange(1000)
    t = time_of(taus, 1000)
    alpha, sigma, d_alpha, d_sigma = path.coefficients(t)
    assert torch.equal(alpha, abar.double().sqrt())
    assert torch.equal(sigma, (1 - abar.double()).sqrt())
    assert torch.equal(timestep_of(t, 1000), taus.double())
    assert torch.equal(path.timestep_of(t.float()), taus.float())
    dense = torch.linspace(0, 1, 4001, dtype=torch.float64)
    alpha, sigma, d_alpha, d_sigma = path.coefficients(dense)
    assert (alpha.diff() > 0).all() and (sigma.diff() < 0).all()
    assert (d_alpha > 0).all() and (d_sigma < 0).all()
    assert alpha[-1] == 1 and sigma[-1] == 0
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(alpha))
    # derivatives agree with finite differences away from the knots
    mid = (time_of(torch.arange(10, 990, 37), 1000) + 0.3 / 1000).double()
    h = 1e-8
    a_plus, s_plus, _, _ = path.coefficients(mid + h)
    a_minus, s_minus, _, _ = path.coefficients(mid - h)
    _, _, da, ds = path.coefficients(mid)
    torch.testing.assert_close(da, (a_plus - a_minus) / (2 * h), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ds, (s_plus - s_minus) / (2 * h), rtol=1e-5, atol=1e-6)
    assert "num_train_timesteps=1000" in repr(path)
    final = discrete_vp(abar, final_alpha_cumprod=float(abar[0]))
    assert float(final.coefficients(torch.ones(1, dtype=torch.float64))[0]) == float(
        abar[0].double().sqrt()
    )


def test_conversions_round_trip_on_discrete_vp():
    path = discrete_vp(DDPMScheduler(num_train_timesteps=1000).alphas_cumprod)
    gen = torch.Generator().manual_seed(0)
    x0, x1 = (
        torch.randn(6, 3, generator=gen, dtype=torch.float64),
        torch.randn(6, 3, generator=gen, dtype=torch.float64),
    )
    t = torch.tensor([0.0, 0.1, 0.3337, 0.5, 0.8, 0.97], dtype=torch.float64)
    sample = path.sample(x0, x1, t)
    for src, truth in (("epsilon", x0), ("data", x1), ("velocity", sample.dxt)):
        for dst in ("velocity", "epsilon", "data", "score"):
            there = path.convert(truth, sample.xt, t, src, dst)
            back = path.convert(there, sample.xt, t, dst, src)
            torch.testing.assert_close(back, truth, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(path.convert(sample.dxt, sample.xt, t, "velocity", "data"), x1)


def test_teacher_field_reads_v_prediction_as_epsilon(ddpm_dirs):
    teacher = load_diffusers_teacher(ddpm_dirs["v_prediction"])
    assert isinstance(teacher, Teacher) and teacher.model_prediction == "v_prediction"
    x, t = noise(), torch.tensor([0.25, 0.6])
    with torch.no_grad():
        v = teacher.model(x, torch.tensor([749.0, 399.0])).sample
        eps = teacher(x, t)
    alpha, sigma, _, _ = teacher.path.coefficients(t.double())
    alpha, sigma = alpha.float().view(-1, 1, 1, 1), sigma.float().view(-1, 1, 1, 1)
    torch.testing.assert_close(eps, alpha * v + sigma * x)


def test_missing_and_corrupt_weights_are_named(ddpm_dirs, tmp_path):
    source = ddpm_dirs["epsilon"]
    for name in ("model_index.json",):
        (tmp_path / name).write_text((source / name).read_text())
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text((source / "unet" / "config.json").read_text())
    (tmp_path / "scheduler").mkdir()
    scheduler_config = source / "scheduler" / "scheduler_config.json"
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(scheduler_config.read_text())
    weights = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        load_diffusers_teacher(tmp_path)
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="diffusion_pytorch_model.safetensors"):
        load_diffusers_teacher(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_diffusers_teacher(tmp_path / "nowhere")


def test_unsupported_scheduler_is_named(ddpm_dirs, tmp_path):
    source = ddpm_dirs["epsilon"]
    tiny_unet().save_pretrained(tmp_path / "unet")
    (tmp_path / "scheduler").mkdir()
    config = json.loads((source / "scheduler" / "scheduler_config.json").read_text())
    config["_class_name"] = "EulerDiscreteScheduler"
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError,
        match="EulerDiscreteScheduler.*scheduler_config.json|"
        "scheduler_config.json.*EulerDiscreteScheduler",
    ):
        load_diffusers_teacher(tmp_path)
    config["_class_name"] = "DDPMScheduler"
    config["prediction_type"] = "flow"
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="prediction_type 'flow'"):
        load_diffusers_teacher(tmp_path)


def test_latent_teacher_decodes_through_vae(ddpm_dirs, tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        latent_channels=1,
        block_out_channels=(8,),
        norm_num_groups=8,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        scaling_factor=0.5,
    )
    vae.save_pretrained(tmp_path / "vae")
    tiny_unet().save_pretrained(tmp_path / "unet")
    DDIMScheduler(num_train_timesteps=1000).save_pretrained(tmp_path / "scheduler")
    index = {
        "_class_name": "LDMPipeline",
        "unet": ["diffusers", "UNet2DModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    teacher = load_diffusers_teacher(tmp_path)
    assert teacher.vae is not None and teacher.path.final_alpha_cumprod == 1.0
    grid = ddim_grid(teacher, 4)
    latents = sample_ode(teacher, noise(), grid=grid, method="ddim", path=teacher.path).x
    images = teacher.decode(latents)
    with torch.no_grad():
        expected = vae.decode(latents / 0.5).sample
    torch.testing.assert_close(images, expected)
