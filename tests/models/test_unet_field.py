import pytest
import torch

from flowkit.models import UNET_PRESETS, UNetField, unet


def test_tiny_forward_backward_on_digits():
    torch.manual_seed(0)
    model = unet("tiny")
    x = torch.randn(128, 1, 8, 8)
    out = model(x, torch.rand(128))
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unet_sees_t_times_time_scale(monkeypatch):
    model = unet("tiny", time_scale=500.0)
    seen = {}
    forward = model.unet.forward

    def record(sample, timestep, class_labels=None):
        seen["timestep"] = timestep
        return forward(sample, timestep, class_labels=class_labels)

    monkeypatch.setattr(model.unet, "forward", record)
    model(torch.randn(2, 1, 8, 8), torch.tensor([0.2, 1.0]))
    assert torch.allclose(seen["timestep"], torch.tensor([100.0, 500.0]))


def test_small_preset_at_28_and_32_px_with_classes():
    model = unet("small", in_channels=3, out_channels=3, num_classes=10)
    assert model.unet.config.num_class_embeds == 11
    for size in (28, 32):
        x = torch.randn(2, 3, size, size)
        assert model(x, 0.5, torch.tensor([0, 9])).shape == x.shape
    # Without labels the null class (index 10) is used.
    x = torch.randn(2, 3, 28, 28)
    assert torch.allclose(model(x, 0.5), model(x, 0.5, torch.tensor([10, 10])))
    assert not torch.allclose(model(x, 0.5), model(x, 0.5, torch.tensor([3, 3])))


def test_preset_sizes():
    count = {name: sum(p.numel() for p in unet(name).parameters()) for name in UNET_PRESETS}
    assert count["tiny"] < 500_000
    assert 1_000_000 < count["small"] < 3_000_000
    assert 55_000_000 < count["cifar10"] < 65_000_000
    cifar = unet("cifar10").unet.config
    assert list(cifar.block_out_channels) == [128, 256, 256, 256] and cifar.layers_per_block == 4
    assert cifar.dropout == 0.1 and cifar.down_block_types[1] == "AttnDownBlock2D"


def test_preset_and_override_errors():
    with pytest.raises(ValueError, match="tiny"):
        unet("huge")
    with pytest.raises(ValueError, match="block_channels"):
        unet("tiny", block_channels=(8, 16))
    with pytest.raises(ValueError, match="not both"):
        unet("tiny", num_classes=3, num_class_embeds=4)
    with pytest.raises(ValueError, match="'v'"):
        unet("tiny", prediction="v")


def test_input_validation():
    model = unet("tiny")
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.randn(2, 3, 8, 8), 0.5)
    with pytest.raises(ValueError, match=r"\(2,\)"):
        model(torch.randn(2, 1, 8, 8), torch.rand(3))


def test_field_is_a_plain_unet_with_same_arguments():
    kwargs = dict(UNET_PRESETS["tiny"])
    model = UNetField(**kwargs, prediction="data")
    assert model.prediction == "data" and model.config.time_scale == 999.0
    assert model.unet.config.block_out_channels == model.config.block_out_channels
