import json

import pytest
import torch

from flowkit.models import MLPField, UNetField, load_model, unet


def randomize(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def only_safetensors(directory):
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["config.json", "diffusion_pytorch_model.safetensors"]


def test_mlp_round_trip(tmp_path):
    model = randomize(MLPField(2, hidden_dim=16, num_layers=2, num_classes=4, prediction="data"))
    model.save_pretrained(tmp_path)
    only_safetensors(tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded) is MLPField and loaded.prediction == "data" and loaded.num_classes == 4
    x, t, y = torch.randn(6, 2), torch.rand(6), torch.tensor([0, 1, 2, 3, 4, 0])
    assert torch.equal(loaded(x, t, y), model(x, t, y))


def test_unet_round_trip(tmp_path):
    model = randomize(unet("tiny", num_classes=3, time_scale=100.0, prediction="epsilon"))
    model.save_pretrained(tmp_path)
    only_safetensors(tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded) is UNetField and loaded.prediction == "epsilon"
    assert loaded.config.time_scale == 100.0 and loaded.unet.config.num_class_embeds == 4
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    assert torch.equal(loaded(x, t, torch.tensor([0, 2])), model(x, t, torch.tensor([0, 2])))


def test_corrupt_or_missing_weights_name_the_file(tmp_path):
    MLPField(2, hidden_dim=8, num_layers=1).save_pretrained(tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="diffusion_pytorch_model.safetensors"):
        load_model(tmp_path)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="diffusion_pytorch_model.safetensors"):
        load_model(tmp_path)
    weights.unlink()
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        load_model(tmp_path)


def test_missing_directory_or_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent"):
        load_model(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)


def test_unknown_class_or_bad_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="UNet2DModel"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        load_model(tmp_path)
