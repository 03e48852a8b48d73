import numpy as np
import pytest
import torch
from PIL import Image

from flowkit.data import save_image_grid, save_scatter


def test_image_grid_layout_and_values(tmp_path):
    x = torch.full((5, 1, 8, 8), -1.0)
    x[1] = 1.0
    path = save_image_grid(x, tmp_path / "sub" / "grid.png", nrow=3)
    assert path == tmp_path / "sub" / "grid.png"
    assert sorted(p.name for p in path.parent.iterdir()) == ["grid.png"]
    with Image.open(path) as image:
        assert image.format == "PNG"
        array = np.asarray(image)
    # Tiles of 64 px (8 x 8 upscaled), 3 per row, 2 rows, 2-px padding.
    assert array.shape == (2 + 2 * 66, 2 + 3 * 66)
    assert (array[2:66, 2:66] == 0).all()
    assert (array[2:66, 68:132] == 255).all()


def test_image_grid_rgb_default_rows(tmp_path):
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with Image.open(save_image_grid(x, tmp_path / "rgb.png")) as image:
        assert image.mode == "RGB" and image.size == (2 + 2 * 66, 2 + 2 * 66)


def test_image_grid_rejects_bad_shape(tmp_path):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        save_image_grid(torch.zeros(4, 2, 8, 8), tmp_path / "bad.png")


def test_scatter_draws_points_over_reference(tmp_path):
    points = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0], [float("nan"), 0.0]])
    reference = torch.tensor([[-1.0, -1.0], [0.0, 0.0]])
    path = save_scatter(points, tmp_path / "scatter.png", reference=reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scatter.png"]
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (512, 512)
        array = np.asarray(image.convert("RGB")).astype(int)
    size, lim = 512, 1.6

    def pixel(x, y):
        return array[
            int((lim - y) / (2 * lim) * (size - 1)), int((x + lim) / (2 * lim) * (size - 1))
        ]

    blue, grey = pixel(0.0, 0.0), pixel(-1.0, -1.0)
    assert blue[2] > blue[0] + 100  # points win over the reference at the same place
    assert (grey == grey[0]).all() and 150 < grey[0] < 255
    assert (pixel(1.0, 1.0) == blue).all()
    assert (array[256 - 40 : 256 - 20, 256 - 40 : 256 - 20] == 255).all()  # background stays white


def test_scatter_rejects_bad_shape(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        save_scatter(torch.zeros(10, 3), tmp_path / "bad.png")


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_scatter(torch.zeros(3, 2), tmp_path / "s.png")
    before = path.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_scatter(torch.ones(3, 2), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png"]


def test_trajectories_draw_one_panel_per_sampler(tmp_path):
    from flowkit.data import save_trajectories

    line = torch.linspace(-1, 1, 5)[:, None, None].expand(5, 3, 2)
    out = save_trajectories({"euler": line, "heun": line}, tmp_path / "t.png", size=100)
    image = Image.open(out).convert("RGB")
    assert image.size == (200, 120)
    pixels = np.asarray(image)
    assert (pixels[20:, :100] != 255).any() and (pixels[20:, 100:] != 255).any()
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="panel 'bad' must have shape"):
        save_trajectories({"bad": torch.zeros(3, 2)}, tmp_path / "bad.png")
