import builtins
import sys
import types

import pytest
import torch
from torch import nn

from flowkit.evaluation.features import FeatureExtractor, get_extractor
from flowkit.evaluation.inception import (
    ENV_VAR,
    WEIGHTS_FILES,
    load_inception,
    resolve_inception_weights,
)

FIDELITY_FILE, PYTORCH_FID_FILE = WEIGHTS_FILES


@pytest.fixture
def clean_lookup(tmp_path, monkeypatch):
    """No env var, and an empty torch hub directory under tmp_path."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub / "checkpoints"


def test_weights_lookup_order(tmp_path, monkeypatch, clean_lookup):
    clean_lookup.mkdir(parents=True)
    (clean_lookup / PYTORCH_FID_FILE).write_bytes(b"")
    assert resolve_inception_weights() == clean_lookup / PYTORCH_FID_FILE
    (clean_lookup / FIDELITY_FILE).write_bytes(b"")
    assert resolve_inception_weights() == clean_lookup / FIDELITY_FILE
    from_env = tmp_path / "env.pth"
    from_env.write_bytes(b"")
    monkeypatch.setenv(ENV_VAR, str(from_env))
    assert resolve_inception_weights() == from_env
    argument = tmp_path / "arg.pth"
    argument.write_bytes(b"")
    assert resolve_inception_weights(argument) == argument
    assert resolve_inception_weights(str(argument)) == argument


def test_missing_weights_message_lists_places_and_remedies(clean_lookup):
    with pytest.raises(FileNotFoundError) as info:
        resolve_inception_weights()
    message = str(info.value)
    for name in WEIGHTS_FILES:
        assert str(clean_lookup / name) in message
    assert "weights=PATH" in message and ENV_VAR in message and "TORCH_HOME" in message
    assert WEIGHTS_FILES[FIDELITY_FILE] in message


def test_named_missing_files_are_errors_not_fallbacks(tmp_path, monkeypatch, clean_lookup):
    clean_lookup.mkdir(parents=True)
    (clean_lookup / FIDELITY_FILE).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="weights='.*nope.pth' is not a file"):
        resolve_inception_weights(tmp_path / "nope.pth")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "gone.pth"))
    with pytest.raises(FileNotFoundError, match=f"{ENV_VAR}='.*gone.pth' is not a file"):
        resolve_inception_weights()


def test_missing_torch_fidelity_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import fails
    with pytest.raises(ImportError, match=r"torch-fidelity.*pip install 'flowkit\[metrics\]'"):
        load_inception()


def test_broken_torchvision_is_a_clear_import_error(monkeypatch):
    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name.startswith("torch_fidelity"):
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m.startswith("torch_fidelity")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(ImportError) as info:
        get_extractor("inception")
    message = str(info.value)
    assert "torchvision::nms" in message and "matches the installed torch" in message
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.fixture
def fake_fidelity(monkeypatch):
    """A stand-in ``torch_fidelity`` with FeatureExtractorInceptionV3's constructor signature
    that loads its weights file like the real one and records what it was given."""
    calls = []

    class FeatureExtractorInceptionV3(nn.Module):
        def __init__(
            self,
            name,
            features_list,
            feature_extractor_weights_path=None,
            feature_extractor_internal_dtype=None,
            **kwargs,
        ):
            super().__init__()
            if feature_extractor_weights_path is None:
                raise AssertionError("would download")
            self.proj = nn.Linear(3, 2048)
            self.load_state_dict(torch.load(feature_extractor_weights_path))
            self.requires_grad_(False)
            self.eval()
            calls.append({"name": name, "features": features_list, "path": None, "inputs": []})
            calls[-1]["path"] = feature_extractor_weights_path

        def forward(self, x):
            assert x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3
            calls[-1]["inputs"].append(x)
            return (self.proj((x.float().mean(dim=(2, 3)) - 128) / 128),)

    package = types.ModuleType("torch_fidelity")
    module = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    module.FeatureExtractorInceptionV3 = FeatureExtractorInceptionV3
    package.feature_extractor_inceptionv3 = module
    monkeypatch.setitem(sys.modules, "torch_fidelity", package)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", module)
    weights = nn.Linear(3, 2048).state_dict()
    return calls, {f"proj.{k}": v for k, v in weights.items()}


def test_load_path_reaches_the_extractor(tmp_path, monkeypatch, clean_lookup, fake_fidelity):
    calls, state = fake_fidelity
    path = tmp_path / "inception.pth"
    torch.save(state, path)
    monkeypatch.setenv(ENV_VAR, str(path))
    extractor = load_inception()
    assert calls[-1]["path"] == str(path)
    assert calls[-1]["name"] == "inception-v3-compat" and calls[-1]["features"] == ["2048"]
    assert isinstance(extractor, FeatureExtractor)
    assert extractor.name == "inception" and extractor.num_features == 2048
    images = torch.tensor([-1.0, 1.0, 0.0, 0.5]).reshape(1, 1, 2, 2).repeat(2, 1, 1, 1)
    features = extractor(images)
    assert features.shape == (2, 2048) and features.dtype == torch.float32
    pixels = calls[-1]["inputs"][-1]
    assert pixels.shape == (2, 3, 2, 2) and pixels.dtype == torch.uint8
    assert pixels[0, :, 0, 0].tolist() == [0, 0, 0] and pixels[0, 2, 0, 1] == 255
    assert pixels[0, 1, 1, 0] == 128 and pixels[0, 1, 1, 1] == 191  # round((x + 1) * 127.5)
    with pytest.raises(ValueError, match=r"1- or 3-channel images"):
        extractor(torch.zeros(1, 4, 8, 8))

    argument = tmp_path / "other.pth"
    torch.save(state, argument)
    via_registry = get_extractor("inception", weights=argument)
    assert calls[-1]["path"] == str(argument)
    assert torch.allclose(via_registry(images), features)


def test_bad_weights_file_is_a_clear_error(tmp_path, clean_lookup, fake_fidelity):
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ValueError, match="wrong.pth is not a state dict of torch-fidelity"):
        load_inception(wrong)


def test_real_torch_fidelity_loads_a_written_state_dict(tmp_path, monkeypatch):
    """Runs where torch-fidelity imports (e.g. a GPU machine with torchvision)."""
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    cls = fidelity.FeatureExtractorInceptionV3
    with monkeypatch.context() as patch:  # build with random weights, no download
        patch.setattr(fidelity, "load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(cls, "load_state_dict", lambda self, *a, **k: None)
        reference = cls("inception-v3-compat", ["2048"])
    path = tmp_path / "random-inception.pth"
    torch.save(reference.state_dict(), path)
    extractor = load_inception(path)
    images = torch.rand(2, 3, 40, 40) * 2 - 1
    with torch.no_grad():
        features = extractor(images)
        (expected,) = reference(((images + 1) * 127.5).round().to(torch.uint8))
    assert features.shape == (2, 2048)
    torch.testing.assert_close(features, expected)
