import numpy as np
import pytest
import torch
from PIL import Image

from flowkit.data import ImageFolder


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def gradient(h=6, w=6):
    """RGB image whose red channel rises left to right (value 0 at column 0)."""
    array = np.zeros((h, w, 3), dtype=np.uint8)
    array[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    array[..., 1] = 255
    return array


def test_class_subfolders_give_sorted_labels(tmp_path):
    for cls, count in (("dog", 2), ("cat", 3)):
        for i in range(count):
            write_png(tmp_path / cls / f"{i}.png", gradient())
    ds = ImageFolder(tmp_path, random_flip=False)
    assert ds.classes == ["cat", "dog"] and ds.num_classes == 2
    assert len(ds) == 5 and ds.labels.tolist() == [0, 0, 0, 1, 1]
    x, y = ds[4]
    assert x.shape == (3, 6, 6) == ds.sample_shape and x.dtype == torch.float32
    assert y.item() == 1 and y.dtype == torch.int64
    assert ds.is_image
    # Values in [-1, 1]: red goes -1 -> 1 along the width, green is 1.
    assert x[0, 0, 0] == -1 and x[0, 0, -1] == 1 and torch.all(x[1] == 1)


def test_flat_folder_has_no_labels_and_grey_conversion(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"{i}.png", gradient())
    Image.fromarray(gradient()).save(tmp_path / "x.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = ImageFolder(tmp_path, channels=1, random_flip=False)
    assert len(ds) == 4 and ds.labels is None and ds.num_classes is None
    item = ds[0]
    assert len(item) == 1 and item[0].shape == (1, 6, 6) == ds.sample_shape


def test_random_flip_uses_global_rng(tmp_path):
    write_png(tmp_path / "a.png", gradient())
    ds = ImageFolder(tmp_path, random_flip=True)
    plain = ds.load(0)
    torch.manual_seed(0)
    items = [ds[0][0] for _ in range(20)]
    torch.manual_seed(0)
    flips = [bool(torch.rand(()) < 0.5) for _ in range(20)]
    for item, flip in zip(items, flips, strict=True):
        assert torch.equal(item, plain.flip(-1) if flip else plain)
    assert 0 < sum(flips) < 20


def test_resize_center_crops_to_square(tmp_path):
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, 10:30] = 255  # the centre square is white, the sides black
    write_png(tmp_path / "wide.png", array)
    write_png(tmp_path / "small.png", np.full((5, 5, 3), 255))
    ds = ImageFolder(tmp_path, image_size=8, random_flip=False)
    assert ds.sample_shape == (3, 8, 8)
    for i in range(len(ds)):
        (x,) = ds[i]
        assert x.shape == (3, 8, 8)
        assert torch.allclose(x, torch.ones_like(x), atol=0.02)


def test_inconsistent_sizes_without_image_size(tmp_path):
    write_png(tmp_path / "a.png", gradient(6, 6))
    write_png(tmp_path / "b.png", gradient(8, 8))
    ds = ImageFolder(tmp_path)
    with pytest.raises(ValueError, match=r"b\.png.*image_size"):
        ds[1]


def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolder(tmp_path / "nowhere")


def test_folder_without_images_names_path_and_extensions(tmp_path):
    (tmp_path / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match=r"no images.*\.png") as info:
        ImageFolder(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_mixed_flat_and_nested_images_are_rejected(tmp_path):
    write_png(tmp_path / "a.png", gradient())
    write_png(tmp_path / "cls" / "b.png", gradient())
    with pytest.raises(ValueError, match="subfolders"):
        ImageFolder(tmp_path)


def test_bad_channels(tmp_path):
    write_png(tmp_path / "a.png", gradient())
    with pytest.raises(ValueError, match="channels"):
        ImageFolder(tmp_path, channels=4)
