"""GPU options: off or no-ops on CPU, named errors, channels-last on request."""

import pytest
import torch

from flowkit.models import unet
from flowkit.models.acceleration import accelerate


def test_cpu_defaults_leave_the_model_alone() -> None:
    model = unet("tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert accelerate(model, torch.device("cpu")) is model
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_channels_last_on_request_keeps_outputs() -> None:
    torch.manual_seed(0)
    model = unet("tiny")
    x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
    expected = model(x, t)
    accelerate(model, torch.device("cpu"), channels_last=True)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x, t), expected, rtol=1e-4, atol=1e-5)


def test_xformers_on_without_cuda_is_a_named_error() -> None:
    with pytest.raises(ValueError, match="xformers='on' needs CUDA"):
        accelerate(unet("tiny"), torch.device("cpu"), xformers="on")
    with pytest.raises(ValueError, match="xformers must be one of"):
        accelerate(unet("tiny"), torch.device("cpu"), xformers="yes")
