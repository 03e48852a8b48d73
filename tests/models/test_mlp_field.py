import pytest
import torch

from flowkit.models import MLPField


def test_forward_shape_and_time_broadcast():
    torch.manual_seed(0)
    model = MLPField(3, hidden_dim=32, num_layers=2, time_embed_dim=16)
    x = torch.randn(5, 3)
    out = model(x, torch.full((5,), 0.25))
    assert out.shape == (5, 3)
    assert torch.allclose(model(x, 0.25), out)
    assert torch.allclose(model(x, torch.tensor(0.25)), out)
    assert not torch.allclose(model(x, 0.75), out)
    assert model.prediction == "velocity"


def test_class_conditioning_and_null_class():
    torch.manual_seed(0)
    model = MLPField(2, hidden_dim=32, num_layers=2, num_classes=3, prediction="epsilon")
    assert model.prediction == "epsilon" and model.num_classes == 3
    x, t = torch.randn(4, 2), torch.rand(4)
    a = model(x, t, torch.tensor([0, 0, 0, 0]))
    b = model(x, t, torch.tensor([1, 1, 1, 1]))
    assert not torch.allclose(a, b)
    assert torch.allclose(model(x, t), model(x, t, torch.full((4,), 3)))
    with pytest.raises(ValueError, match=r"0\.\.3"):
        model(x, t, torch.tensor([0, 1, 2, 4]))


def test_gradients_reach_every_parameter():
    model = MLPField(2, hidden_dim=16, num_layers=2, num_classes=2)
    model(torch.randn(8, 2), torch.rand(8), torch.tensor([0, 1] * 4)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize(
    ("x", "t", "labels", "match"),
    [
        (torch.zeros(4, 3), torch.rand(4), None, r"\(B, 2\)"),
        (torch.zeros(4, 2), torch.rand(3), None, r"\(4,\)"),
        (torch.zeros(4, 2), torch.rand(4), torch.zeros(4, dtype=torch.long), "num_classes=None"),
    ],
)
def test_input_validation(x, t, labels, match):
    with pytest.raises(ValueError, match=match):
        MLPField(2, hidden_dim=8, num_layers=1)(x, t, labels)


def test_invalid_config():
    with pytest.raises(ValueError, match="'noise'"):
        MLPField(2, prediction="noise")
    with pytest.raises(ValueError, match="num_layers"):
        MLPField(2, num_layers=0)
