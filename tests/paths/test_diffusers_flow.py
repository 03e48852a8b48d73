"""The edge conversion between flowkit (t, velocity) and diffusers (sigma, timestep, flow)."""

import pytest
import torch

from flowkit.pipelines import from_diffusers_flow, to_diffusers_flow


def test_known_value() -> None:
    v = torch.tensor([[1.0, -2.0]])
    sigma, timestep, out = to_diffusers_flow(0.25, v)
    assert sigma == 0.75
    assert timestep == 750.0
    assert torch.equal(out, -v)


def test_known_value_back() -> None:
    out = torch.tensor([[0.5, 3.0]])
    t, v = from_diffusers_flow(torch.tensor(750.0), out)
    assert float(t) == 0.25
    assert torch.equal(v, -out)
    assert from_diffusers_flow(sigma=0.75).t == 0.25


def test_integer_timesteps_divide_as_floats() -> None:
    t = from_diffusers_flow(torch.tensor([1000, 750, 0])).t
    assert torch.allclose(t, torch.tensor([0.0, 0.25, 1.0]))


@pytest.mark.parametrize("scale", [1000, 1])
def test_round_trip(scale: int) -> None:
    gen = torch.Generator().manual_seed(0)
    t = torch.rand(16, dtype=torch.float64, generator=gen)
    v = torch.randn(16, 3, dtype=torch.float64, generator=gen)
    d = to_diffusers_flow(t, v, num_train_timesteps=scale)
    assert torch.allclose(d.timestep, scale * d.sigma)
    back = from_diffusers_flow(d.timestep, d.model_output, num_train_timesteps=scale)
    assert torch.allclose(back.t, t, rtol=0, atol=1e-12)
    assert torch.equal(back.velocity, v)
    via_sigma = from_diffusers_flow(sigma=d.sigma, num_train_timesteps=scale)
    assert torch.allclose(via_sigma.t, t, rtol=0, atol=1e-15)
    assert via_sigma.velocity is None


def test_time_only_keeps_dtype_and_device() -> None:
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float32)
    d = to_diffusers_flow(t)
    assert d.model_output is None
    assert d.timestep.dtype == torch.float32
    assert torch.equal(d.timestep, torch.tensor([1000.0, 500.0, 0.0]))


def test_named_errors() -> None:
    with pytest.raises(ValueError, match="exactly one of timestep= or sigma="):
        from_diffusers_flow()
    with pytest.raises(ValueError, match="exactly one of timestep= or sigma="):
        from_diffusers_flow(500.0, sigma=0.5)
    with pytest.raises(ValueError, match="num_train_timesteps must be positive"):
        to_diffusers_flow(0.5, num_train_timesteps=0)
    with pytest.raises(ValueError, match="num_train_timesteps must be positive"):
        from_diffusers_flow(500.0, num_train_timesteps=-1)
