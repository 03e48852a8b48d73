import numpy as np
import pytest
import torch
from PIL import Image

from flowkit.data import DATASET_NAMES, ImageFolder, InMemoryDataset, build_dataset, sample_toy


def test_toy_dataset_uses_num_points_and_seed():
    ds = build_dataset("moons", num_points=300, seed=5)
    assert isinstance(ds, InMemoryDataset) and len(ds) == 300
    assert torch.equal(ds.x, sample_toy("moons", 300, seed=5))
    assert ds.labels is None and not ds.is_image


def test_digits_keep_labels_without_flips():
    ds = build_dataset("digits")
    assert isinstance(ds, InMemoryDataset)
    assert ds.sample_shape == (1, 8, 8) and ds.num_classes == 10
    assert not ds.random_flip
    assert build_dataset("digits", random_flip=True).random_flip


@pytest.mark.parametrize("name", ["image_folder", "cifar10"])
def test_folder_datasets(tmp_path, name):
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    ds = build_dataset(name, root=tmp_path, image_size=2)
    assert isinstance(ds, ImageFolder) and ds.random_flip
    assert ds.sample_shape == (3, 2, 2)
    with pytest.raises(ValueError, match=r"data\.root"):
        build_dataset(name)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="imagenet") as info:
        build_dataset("imagenet")
    assert all(name in str(info.value) for name in DATASET_NAMES)


def test_image_size_only_for_folders():
    with pytest.raises(ValueError, match="image_size"):
        build_dataset("digits", image_size=16)
