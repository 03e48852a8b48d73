import builtins
import pickle
import sys
import types

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from flowkit.evaluation.lpips import (
    ENV_VAR,
    LPIPSDistance,
    load_backbone,
    load_lpips,
    resolve_backbone_weights,
)


@pytest.fixture
def clean_lookup(tmp_path, monkeypatch):
    """No env var, and an empty torch hub directory under tmp_path."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub / "checkpoints"


def test_weights_lookup_order(tmp_path, monkeypatch, clean_lookup):
    cache = clean_lookup
    cache.mkdir(parents=True)
    cached = cache / "vgg16-397923af.pth"
    cached.write_bytes(b"")
    assert resolve_backbone_weights("vgg") == cached
    from_env = tmp_path / "env.pth"
    from_env.write_bytes(b"")
    monkeypatch.setenv(ENV_VAR, str(from_env))
    assert resolve_backbone_weights("vgg") == from_env
    argument = tmp_path / "arg.safetensors"
    argument.write_bytes(b"")
    assert resolve_backbone_weights("vgg", argument) == argument
    assert resolve_backbone_weights("vgg", str(argument)) == argument


def test_cache_uses_torchvision_file_names(clean_lookup):
    clean_lookup.mkdir(parents=True)
    (clean_lookup / "alexnet-owt-7be5be79.pth").write_bytes(b"")
    assert resolve_backbone_weights("alex").name == "alexnet-owt-7be5be79.pth"
    with pytest.raises(FileNotFoundError):
        resolve_backbone_weights("vgg")


def test_missing_weights_message_lists_places_and_remedies(clean_lookup):
    with pytest.raises(FileNotFoundError) as info:
        resolve_backbone_weights("vgg")
    message = str(info.value)
    assert str(clean_lookup / "vgg16-397923af.pth") in message
    assert "backbone_weights" in message and ENV_VAR in message and "TORCH_HOME" in message
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message


def test_explicit_missing_file_does_not_fall_back(tmp_path, monkeypatch, clean_lookup):
    clean_lookup.mkdir(parents=True)
    (clean_lookup / "vgg16-397923af.pth").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="backbone_weights='.*nope.pth' is not a file"):
        resolve_backbone_weights("vgg", tmp_path / "nope.pth")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "gone.pth"))
    with pytest.raises(FileNotFoundError, match=f"{ENV_VAR}='.*gone.pth' is not a file"):
        resolve_backbone_weights("vgg")


def test_unknown_net():
    with pytest.raises(ValueError, match=r"unknown LPIPS net 'resnet'; expected one of"):
        resolve_backbone_weights("resnet")
    with pytest.raises(ValueError, match="unknown LPIPS net 'resnet'"):
        load_lpips("resnet")


def test_broken_torchvision_gives_install_hint(monkeypatch):
    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "torchvision" or name.startswith("torchvision."):
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(ImportError) as info:
        load_lpips("vgg")
    message = str(info.value)
    assert "torchvision" in message and "unavailable or broken" in message
    assert "operator torchvision::nms does not exist" in message
    assert "pip install 'flowkit[metrics]'" in message


def test_missing_torchvision_or_lpips_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"torchvision.*pip install 'flowkit\[metrics\]'"):
        load_lpips("alex")
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "lpips", None)
    with pytest.raises(ImportError, match=r"lpips package.*pip install 'flowkit\[metrics\]'"):
        load_lpips("alex")


# A stand-in for the lpips package with its real structure: LPIPS(...).net holds torchvision's
# `features` split into slices whose children keep the layer indices as names.


def tiny_features() -> nn.Sequential:
    """A torchvision-like `features` stack: conv, relu, pool, conv, relu, conv, relu."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(5, 6, 1),
        nn.ReLU(),
    )


class FakeBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        features = tiny_features()
        self.slice1, self.slice2 = nn.Sequential(), nn.Sequential()
        for index in range(2):
            self.slice1.add_module(str(index), features[index])
        for index in range(2, 7):
            self.slice2.add_module(str(index), features[index])

    def forward(self, x):
        h1 = self.slice1(x)
        return h1, self.slice2(h1)


class FakeLPIPS(nn.Module):
    calls: list[dict] = []

    def __init__(self, **kwargs) -> None:
        super().__init__()
        FakeLPIPS.calls.append(kwargs)
        self.net = FakeBackbone()
        self.dropout = nn.Dropout(0.5)

    def forward(self, a, b):
        distance = sum(
            (fa - fb).pow(2).mean(dim=(1, 2, 3))
            for fa, fb in zip(self.net(a), self.net(b), strict=True)
        )
        return self.dropout(distance).reshape(-1, 1, 1, 1)


@pytest.fixture
def fake_lpips(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    module = types.ModuleType("lpips")
    module.LPIPS = FakeLPIPS
    monkeypatch.setitem(sys.modules, "lpips", module)
    FakeLPIPS.calls.clear()
    return module


def torchvision_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    reference = nn.Module()
    reference.features = tiny_features()
    reference.classifier = nn.Linear(6, 2)
    return reference.state_dict()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_lpips_copies_backbone_and_freezes(tmp_path, fake_lpips, suffix):
    state = torchvision_state_dict()
    path = tmp_path / f"backbone{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    distance = load_lpips("alex", backbone_weights=path)
    assert FakeLPIPS.calls == [
        {"net": "alex", "pretrained": True, "pnet_rand": True, "verbose": False}
    ]
    assert isinstance(distance, LPIPSDistance)
    backbone = distance.model.net
    torch.testing.assert_close(backbone.slice1[0].weight, state["features.0.weight"])
    torch.testing.assert_close(getattr(backbone.slice2, "3").weight, state["features.3.weight"])
    torch.testing.assert_close(getattr(backbone.slice2, "5").bias, state["features.5.bias"])
    assert not any(p.requires_grad for p in distance.parameters())
    distance.train()
    assert not distance.training and not distance.model.dropout.training
    generator = torch.Generator().manual_seed(0)
    a = (torch.rand(2, 3, 8, 8, generator=generator) * 2 - 1).requires_grad_()
    b = torch.rand(2, 3, 8, 8, generator=generator) * 2 - 1
    value = distance(a, b)
    assert value.shape == (2,)
    torch.testing.assert_close(distance(a, b), value)  # dropout off: deterministic
    torch.testing.assert_close(distance(b, b), torch.zeros(2))
    value.sum().backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0
    gray = distance(a[:, :1].detach(), b[:, :1])  # one channel is repeated to RGB
    assert gray.shape == (2,)


def test_load_lpips_reads_env_var_and_checks_files(tmp_path, monkeypatch, fake_lpips):
    path = tmp_path / "from_env.pth"
    torch.save(torchvision_state_dict(seed=3), path)
    monkeypatch.setenv(ENV_VAR, str(path))
    distance = load_lpips("vgg")
    expected = torchvision_state_dict(seed=3)["features.0.weight"]
    torch.testing.assert_close(distance.model.net.slice1[0].weight, expected)


def test_load_lpips_refuses_pickled_objects(tmp_path, fake_lpips):
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": torch.zeros(1), "payload": FakeBackbone}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_lpips("alex", backbone_weights=path)


def test_load_backbone_rejects_the_wrong_network():
    backbone = FakeBackbone()
    with pytest.raises(ValueError, match="no 'features.\\*' tensors"):
        load_backbone(backbone, {"classifier.weight": torch.zeros(1)}, source="x.pth")
    state = torchvision_state_dict()
    state["features.9.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="features.9 has no place in the backbone"):
        load_backbone(backbone, state, source="x.pth")
    state = torchvision_state_dict()
    del state["features.5.bias"]
    with pytest.raises(ValueError, match="x.pth does not fit the LPIPS backbone"):
        load_backbone(backbone, state, source="x.pth")


def test_real_lpips_with_local_random_backbone(tmp_path):
    """Runs only where lpips and a working torchvision are installed (e.g. the GPU box)."""
    pytest.importorskip("torchvision")
    lpips = pytest.importorskip("lpips")
    import torchvision

    reference = torchvision.models.alexnet(weights=None)
    path = tmp_path / "alexnet.safetensors"
    save_file(reference.state_dict(), str(path))
    distance = load_lpips("alex", backbone_weights=path)
    assert isinstance(distance.model, lpips.LPIPS)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        features = reference.features[:2](distance.model.scaling_layer(x))
        torch.testing.assert_close(
            distance.model.net.slice1(distance.model.scaling_layer(x)), features
        )
        assert distance(x, x).abs().max() < 1e-6
        assert distance(x, torch.flip(x, dims=[0])).shape == (2,)
