"""Corrupt files in an image folder: a named error by default, skipped with a warning on request."""

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from flowkit.data import ImageFolder, build_dataset
from flowkit.data.image_folder import CorruptImageError
from flowkit.files import FlowkitError


def write_png(path, value=0, size=6, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size, 3) if mode == "RGB" else (size, size)  # Pillow infers RGB or L
    Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(path)
    return path


def write_garbage(path):
    """A file with an image extension that holds no image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a PNG")
    return path


def write_truncated(path):
    """A PNG cut off in its pixel data: Pillow identifies it but cannot decode it."""
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[:200])
    return path


@pytest.fixture
def folder(tmp_path):
    """``a.png, c.png, e.png`` good (values 10, 30, 50), ``b.png`` garbage, ``d.png`` truncated."""
    root = tmp_path / "images"
    for name, value in (("a", 10), ("c", 30), ("e", 50)):
        write_png(root / f"{name}.png", value)
    write_garbage(root / "b.png")
    write_truncated(root / "d.png")
    return root


@pytest.mark.parametrize("bad", ["b.png", "d.png"])
def test_a_corrupt_image_is_a_value_error_naming_the_file_and_the_skip_option(folder, bad):
    ds = ImageFolder(folder, random_flip=False)
    index = [p.name for p in ds.files].index(bad)
    with pytest.raises(CorruptImageError) as caught:
        ds[index]
    error = caught.value
    assert isinstance(error, ValueError) and isinstance(error, FlowkitError)
    message = str(error)
    assert str(folder / bad) in message
    assert "skip_corrupt=True" in message and "--skip-corrupt" in message
    # The good images still load.
    assert ds[0][0].shape == (3, 6, 6)


def test_a_corrupt_first_image_fails_when_the_folder_is_opened(tmp_path):
    write_garbage(tmp_path / "a.png")
    write_png(tmp_path / "b.png")
    with pytest.raises(ValueError, match=r"a\.png.*cannot be decoded.*skip_corrupt"):
        ImageFolder(tmp_path)


def test_skip_corrupt_yields_the_good_images_and_warns_with_the_count(folder):
    with pytest.warns(UserWarning, match=r"skipped 2 corrupt images of 5") as record:
        ds = ImageFolder(folder, random_flip=False, skip_corrupt=True)
    assert len(record) == 1
    assert "'b.png'" in str(record[0].message) and "'d.png'" in str(record[0].message)
    assert [p.name for p in ds.skipped] == ["b.png", "d.png"]
    assert [p.name for p in ds.files] == ["a.png", "c.png", "e.png"] and len(ds) == 3
    values = [round(float(ds[i][0].mean() + 1) * 127.5) for i in range(len(ds))]
    assert values == [10, 30, 50]


def test_skip_corrupt_is_silent_on_a_clean_folder(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"{i}.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = ImageFolder(tmp_path, skip_corrupt=True)
    assert len(ds) == 3 and ds.skipped == []


def test_skipping_keeps_the_labels_of_every_class_folder(tmp_path):
    """A class whose only image is corrupt keeps its index: labels do not shift."""
    write_png(tmp_path / "ant" / "0.png", 1)
    write_garbage(tmp_path / "bee" / "0.png")
    write_png(tmp_path / "cat" / "0.png", 3)
    write_png(tmp_path / "cat" / "1.png", 4)
    with pytest.warns(UserWarning, match="skipped 1 corrupt image of 4"):
        ds = ImageFolder(tmp_path, random_flip=False, skip_corrupt=True)
    assert ds.classes == ["ant", "bee", "cat"] and ds.num_classes == 3
    assert ds.labels.tolist() == [0, 2, 2]
    assert [int(ds[i][1]) for i in range(3)] == [0, 2, 2]


def test_a_folder_of_only_corrupt_images_is_an_error_even_when_skipping(tmp_path):
    write_garbage(tmp_path / "a.png")
    write_truncated(tmp_path / "b.png")
    with (
        pytest.warns(UserWarning, match="skipped 2"),
        pytest.raises(CorruptImageError, match="none of the 2 images"),
    ):
        ImageFolder(tmp_path, skip_corrupt=True)


def test_the_warning_names_at_most_five_files(tmp_path):
    write_png(tmp_path / "good.png")
    for i in range(7):
        write_garbage(tmp_path / f"bad{i}.png")
    with pytest.warns(UserWarning, match=r"skipped 7 corrupt images of 8 .* and 2 more"):
        ds = ImageFolder(tmp_path, skip_corrupt=True)
    assert len(ds) == 1 and len(ds.skipped) == 7


def test_a_missing_file_is_not_called_corrupt(tmp_path):
    write_png(tmp_path / "a.png")
    gone = write_png(tmp_path / "b.png")
    ds = ImageFolder(tmp_path)
    gone.unlink()
    with pytest.raises(FileNotFoundError):
        ds.load(1)


def test_build_dataset_passes_skip_corrupt_to_folders_only(folder):
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = build_dataset("image_folder", root=folder, skip_corrupt=True)
    assert len(ds) == 3
    with pytest.raises(ValueError, match="skip_corrupt"):
        build_dataset("digits", skip_corrupt=True)


def test_stats_command_names_the_corrupt_file(tmp_path, capsys):
    """``flowkit stats`` on a folder with a corrupt PNG: one error line naming the file."""
    from flowkit.cli.main import main

    root = tmp_path / "grey"
    for i in range(4):
        write_png(root / f"{i}.png", 40 * i, size=8, mode="L")
    write_garbage(root / "2x.png")
    code = main(["stats", str(root), "--out", str(tmp_path / "ref.npz"), "--channels", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert str(root / "2x.png") in err and "--skip-corrupt" in err
    assert "Traceback" not in err
    assert not (tmp_path / "ref.npz").exists()


def test_load_stays_float_in_minus_one_one_after_skipping(folder):
    with pytest.warns(UserWarning):
        ds = ImageFolder(folder, random_flip=False, skip_corrupt=True)
    x = torch.stack([ds.load(i) for i in range(len(ds))])
    assert x.dtype == torch.float32 and x.shape == (3, 3, 6, 6)
    assert x.min() >= -1 and x.max() <= 1


def test_stats_command_skips_corrupt_files_when_asked(tmp_path, capsys):
    from flowkit.cli.main import main
    from flowkit.evaluation.stats import load_stats

    root = tmp_path / "grey"
    for i in range(4):
        write_png(root / f"{i}.png", 40 * i, size=8, mode="L")
    write_garbage(root / "2x.png")
    args = ["stats", str(root), "--out", str(tmp_path / "ref.npz"), "--channels", "1"]
    with pytest.warns(UserWarning, match="skipped 1 corrupt image"):
        assert main([*args, "--skip-corrupt", "--features", "digits", "--image-size", "8",
                     "--no-progress"]) == 0  # fmt: skip
    assert load_stats(tmp_path / "ref.npz").count == 4
