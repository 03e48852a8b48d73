"""flowkit's flow schedulers as drop-in diffusers schedulers: the same signatures, noise levels,
timesteps and steps as FlowMatchEuler/HeunDiscreteScheduler (diffusers' own test patterns)."""

import inspect

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

from flowkit.pipelines import FlowEulerScheduler, FlowHeunScheduler
from flowkit.pipelines.time_shift import resolution_mu

PAIRS = [
    (FlowEulerScheduler, FlowMatchEulerDiscreteScheduler),
    (FlowHeunScheduler, FlowMatchHeunDiscreteScheduler),
]
# diffusers configs and set_timesteps() keywords
EULER_CASES = [
    ({"shift": 3.0}, {}),
    ({"use_dynamic_shifting": True}, {"mu": 0.8}),
    ({"use_dynamic_shifting": True, "time_shift_type": "linear"}, {"mu": 1.3}),
    ({"shift": 3.0, "shift_terminal": 0.1}, {}),
    ({"shift": 2.0, "use_karras_sigmas": True}, {}),
    ({"use_exponential_sigmas": True}, {}),
    ({"use_beta_sigmas": True}, {}),
]
LEVELS = dict(rtol=0, atol=1e-6)
TIMESTEPS = dict(rtol=1e-6, atol=1e-4)


def model(x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for a flow model: a channel mix that depends on the time."""
    mix = torch.tensor([[0.3, -0.2, 0.1], [0.0, 0.4, -0.3], [0.2, 0.1, -0.5]], dtype=x.dtype)
    return torch.einsum("ij,bj...->bi...", mix, x) * (1 + timestep.to(x.dtype) / 1000) - 0.1


@pytest.fixture
def latents() -> torch.Tensor:
    return torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))


def run(scheduler, x: torch.Tensor, seed: int | None = None, **step_kwargs) -> list[torch.Tensor]:
    """The states of a diffusers-style loop (a fresh generator per run when ``seed``)."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    states = []
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t), t, x, generator=generator, **step_kwargs).prev_sample
        states.append(x)
    return states


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
def test_call_signatures_match_diffusers(ours, theirs) -> None:
    for method in ("set_timesteps", "step", "scale_noise", "index_for_timestep", "set_begin_index"):
        mine = inspect.signature(getattr(ours, method)).parameters
        their = inspect.signature(getattr(theirs, method)).parameters
        assert list(mine)[: len(their)] == list(their), method
        for name, parameter in their.items():  # optional where diffusers requires is fine
            if parameter.default is not inspect.Parameter.empty:
                assert mine[name].default == parameter.default, (method, name)
    for name in ("shift", "set_shift", "sigma_min", "sigma_max", "time_shift"):
        if hasattr(theirs(), name):
            assert hasattr(ours(), name), name


@pytest.mark.parametrize(("config", "kwargs"), EULER_CASES)
def test_euler_set_timesteps_equals_diffusers_for_the_same_config(config, kwargs) -> None:
    theirs = FlowMatchEulerDiscreteScheduler(**config)
    ours = FlowEulerScheduler.from_config(theirs.config)
    assert (ours.sigma_min, ours.sigma_max, ours.shift) == (
        theirs.sigma_min,
        theirs.sigma_max,
        theirs.shift,
    )
    for call in ({"num_inference_steps": 7}, {"sigmas": np.linspace(1.0, 1 / 7, 7)}):
        theirs.set_timesteps(**call, **kwargs)
        ours.set_timesteps(**call, **kwargs)
        assert ours.num_inference_steps == theirs.num_inference_steps == 7
        assert ours.sigmas.dtype == ours.timesteps.dtype == torch.float32
        torch.testing.assert_close(ours.sigmas, theirs.sigmas, **LEVELS)
        torch.testing.assert_close(ours.timesteps, theirs.timesteps, **TIMESTEPS)


@pytest.mark.parametrize(("config", "kwargs"), EULER_CASES[:3])
@pytest.mark.parametrize("stochastic", [False, True])
def test_euler_steps_equal_diffusers(latents, config, kwargs, stochastic) -> None:
    theirs = FlowMatchEulerDiscreteScheduler(**config, stochastic_sampling=stochastic)
    ours = FlowEulerScheduler.from_config(theirs.config)
    theirs.set_timesteps(5, **kwargs)
    ours.set_timesteps(5, **kwargs)
    seed = 3 if stochastic else None
    for mine, their in zip(run(ours, latents, seed), run(theirs, latents, seed), strict=True):
        torch.testing.assert_close(mine, their, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("churn", [0.0, 2.0])
def test_heun_steps_equal_diffusers_heun(latents, churn) -> None:
    theirs = FlowMatchHeunDiscreteScheduler(shift=3.0)
    ours = FlowHeunScheduler.from_config(theirs.config)
    assert ours.config.final_euler and ours.shift == 3.0
    theirs.set_timesteps(4)
    ours.set_timesteps(4)
    torch.testing.assert_close(ours.sigmas, theirs.sigmas, **LEVELS)
    torch.testing.assert_close(ours.timesteps, theirs.timesteps, **TIMESTEPS)
    mine = run(ours, latents, seed=5, s_churn=churn)
    their = run(theirs, latents, seed=5, s_churn=churn)
    # diffusers recovers the corrector's derivative as (x - (x - out s)) / s: a few ulp
    for a, b in zip(mine, their, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(run(ours, latents, seed=5, s_churn=2.0)[-1], run(ours, latents)[-1])


def test_per_token_timesteps_step_equals_diffusers() -> None:
    gen = torch.Generator().manual_seed(1)
    theirs = FlowMatchEulerDiscreteScheduler(shift=3.0)
    ours = FlowEulerScheduler.from_config(theirs.config)
    theirs.set_timesteps(6)
    ours.set_timesteps(6)
    x, out = torch.randn(2, 10, 4, generator=gen), torch.randn(2, 10, 4, generator=gen)
    tokens = torch.rand(2, 10, generator=gen) * 1000
    mine = ours.step(out, ours.timesteps[0], x, per_token_timesteps=tokens).prev_sample
    their = theirs.step(out, theirs.timesteps[0], x, per_token_timesteps=tokens).prev_sample
    torch.testing.assert_close(mine, their, rtol=1e-6, atol=1e-6)


def test_flux_style_loop_with_mu_and_sigmas_equals_diffusers(latents) -> None:
    """FluxPipeline's calls: sigmas = linspace(1, 1/n, n), mu from the token count, timesteps
    read back after set_timesteps, step(..., return_dict=False)[0]."""
    config = {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "shift": 3.0}
    theirs = FlowMatchEulerDiscreteScheduler(**config)
    ours = FlowEulerScheduler.from_config(theirs.config)
    finals = []
    for scheduler in (ours, theirs):
        assert "sigmas" in inspect.signature(scheduler.set_timesteps).parameters
        c = scheduler.config
        mu = resolution_mu(
            1024, c.base_image_seq_len, c.max_image_seq_len, c.base_shift, c.max_shift
        )
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 8, 8), device="cpu", mu=mu)
        x = latents
        for t in scheduler.timesteps:
            x = scheduler.step(model(x, t), t, x, return_dict=False)[0]
        finals.append(x)
    torch.testing.assert_close(*finals, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
def test_scale_noise_broadcasts_one_timestep_over_the_batch(latents, ours, theirs) -> None:
    ours, theirs = ours.from_config(theirs(shift=3.0).config), theirs(shift=3.0)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(2))
    for scheduler in (ours, theirs):
        scheduler.set_timesteps(4)
        scheduler.set_begin_index(2)  # img2img: start mid-grid
    timestep = ours.timesteps[2:3]  # one element for a batch of 2
    mine = ours.scale_noise(latents, timestep, noise)
    their = theirs.scale_noise(latents, theirs.timesteps[2:3].repeat(2), noise)
    torch.testing.assert_close(mine, their, rtol=1e-6, atol=1e-6)
    sigma = float(ours.sigmas[2])
    torch.testing.assert_close(mine, (1 - sigma) * latents + sigma * noise)
    half = ours.scale_noise(latents.bfloat16(), timestep, noise.bfloat16())
    assert half.dtype == torch.bfloat16 and half.shape == latents.shape
    with pytest.raises(ValueError, match=r"timestep must hold 1 or batch size 2 values"):
        ours.scale_noise(latents, ours.timesteps[:3], noise)


@pytest.mark.parametrize("cls", [FlowEulerScheduler, FlowHeunScheduler])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (2, 3, 5)])
def test_step_output_shapes_and_dtypes(cls, dtype, shape) -> None:
    scheduler = cls(shift=3.0)
    scheduler.set_timesteps(3)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(4)).to(dtype)
    for t in scheduler.timesteps:
        out = scheduler.step(model(x, t), t, x)
        (same,) = (out.prev_sample,)
        assert same.shape == x.shape and same.dtype == dtype
        x = same
    scheduler.set_timesteps(3)
    t = scheduler.timesteps[0]
    as_tuple = scheduler.step(model(x, t), t, x, return_dict=False)
    assert isinstance(as_tuple, tuple) and as_tuple[0].shape == x.shape


def test_set_shift_changes_the_levels_as_in_diffusers() -> None:
    theirs = FlowMatchEulerDiscreteScheduler(shift=2.0)
    ours = FlowEulerScheduler.from_config(theirs.config)
    for scheduler in (ours, theirs):
        scheduler.set_timesteps(5)
        scheduler.set_shift(4.0)
        assert scheduler.shift == 4.0 and scheduler.config.shift == 2.0
        scheduler.set_timesteps(5)
    torch.testing.assert_close(ours.sigmas, theirs.sigmas, **LEVELS)
    plain = FlowEulerScheduler.from_config(theirs.config)
    plain.set_timesteps(5)
    assert not torch.allclose(plain.sigmas, ours.sigmas)


def test_set_timesteps_with_timesteps_as_diffusers() -> None:
    theirs, ours = FlowMatchEulerDiscreteScheduler(), FlowEulerScheduler()
    given = [1000.0, 800.0, 500.0, 200.0]
    for call in ({"timesteps": given}, {"timesteps": given, "sigmas": [1.0, 0.7, 0.4, 0.1]}):
        theirs.set_timesteps(**call)
        ours.set_timesteps(**call)
        torch.testing.assert_close(ours.timesteps, theirs.timesteps, **TIMESTEPS)
        torch.testing.assert_close(ours.sigmas, theirs.sigmas, **LEVELS)
    heun = FlowHeunScheduler()
    heun.set_timesteps(timesteps=given[:3])
    assert heun.timesteps.tolist() == [1000, 800, 800, 500, 500, 0]
    with pytest.raises(ValueError, match="sigmas and timesteps must have the same length"):
        ours.set_timesteps(timesteps=given, sigmas=[1.0, 0.5])


def test_dynamic_shifting_needs_mu_and_mu_is_ignored_without() -> None:
    dynamic = FlowEulerScheduler(use_dynamic_shifting=True, grid="diffusers")
    with pytest.raises(ValueError, match="needs mu= when use_dynamic_shifting=True"):
        dynamic.set_timesteps(4)
    dynamic.set_timesteps(4, mu=1.0)
    low = dynamic.sigmas.clone()
    dynamic.set_timesteps(4, mu=2.0)  # a larger mu shifts the levels toward the noise
    assert bool((dynamic.sigmas[1:-1] > low[1:-1]).all())
    static = FlowEulerScheduler()
    static.set_timesteps(4, mu=5.0)
    assert static.sigmas.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
