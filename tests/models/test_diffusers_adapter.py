import pytest
import torch
from diffusers.utils import BaseOutput
from torch import nn

from flowkit.models import DiffusersField, unet


class Recorder(nn.Module):
    """Diffusers-like model that records its timestep and returns ``2 * sample``."""

    def __init__(self, wrap=True):
        super().__init__()
        self.wrap = wrap
        self.calls = []

    def forward(self, sample, timestep, **kwargs):
        self.calls.append((timestep, kwargs))
        out = 2 * sample
        return BaseOutput(sample=out) if self.wrap else out


def test_passes_scaled_time_and_unwraps_sample():
    model = Recorder()
    field = DiffusersField(model, time_scale=1000.0, prediction="epsilon")
    x = torch.randn(3, 4)
    out = field(x, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(out, 2 * x)
    timestep, kwargs = model.calls[-1]
    assert torch.allclose(timestep, torch.tensor([0.0, 500.0, 1000.0]))
    assert kwargs == {}
    assert field.prediction == "epsilon"


def test_scalar_time_class_labels_and_extra_kwargs():
    model = Recorder(wrap=False)
    field = DiffusersField(model)
    labels = torch.tensor([1, 2])
    out = field(torch.ones(2, 1, 2, 2), 0.5, class_labels=labels, return_dict=False)
    assert torch.equal(out, torch.full((2, 1, 2, 2), 2.0))
    timestep, kwargs = model.calls[-1]
    assert torch.allclose(timestep, torch.full((2,), 0.5 * 999))
    assert kwargs["class_labels"] is labels and kwargs["return_dict"] is False


def test_timestep_fn_overrides_time_scale():
    model = Recorder()
    field = DiffusersField(model, time_scale=5.0, timestep_fn=lambda t: 999 * (1 - t))
    field(torch.zeros(2, 3), torch.tensor([0.0, 0.25]))
    assert torch.allclose(model.calls[-1][0], torch.tensor([999.0, 749.25]))


def test_wraps_a_diffusers_unet_like_unet_field():
    torch.manual_seed(0)
    reference = unet("tiny").eval()
    field = DiffusersField(reference.unet)
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    assert torch.allclose(field(x, t), reference(x, t))


def test_errors():
    with pytest.raises(ValueError, match="'flow'"):
        DiffusersField(Recorder(), prediction="flow")

    class Odd(nn.Module):
        def forward(self, sample, timestep):
            return {"sample": sample}

    with pytest.raises(TypeError, match="Odd returned dict"):
        DiffusersField(Odd())(torch.zeros(1, 2), 0.0)
