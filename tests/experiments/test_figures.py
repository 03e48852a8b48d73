"""Report figures: panels in a row over a quality-versus-NFE chart."""

import pytest
import torch
from PIL import Image

from flowkit.data.plots import image_grid, scatter_image
from flowkit.experiments.figures import save_report_figure


def test_panels_and_chart_are_drawn(tmp_path):
    grid = image_grid(torch.zeros(4, 1, 8, 8))
    scatter = scatter_image(torch.randn(100, 2, generator=torch.Generator().manual_seed(0)))
    curves = {"1-RF": [(1, 40.0), (2, 5.0), (4, 0.8)], "2-RF": [(1, 2.0), (2, 1.0), (4, 0.5)]}
    out = save_report_figure([("a", grid), ("b", scatter)], curves, tmp_path / "fig.png")
    picture = Image.open(out).convert("RGB")
    assert picture.width > grid.width + scatter.width
    assert picture.height > max(grid.height, scatter.height) + 250
    # both curves' colours appear in the chart area below the panels
    chart = picture.crop((0, max(grid.height, scatter.height) + 40, picture.width, picture.height))
    colours = {pixel for pixel in chart.getdata()}
    assert (31, 119, 180) in colours and (214, 39, 40) in colours
    assert not (tmp_path / "fig.png.tmp").exists()


def test_needs_a_panel(tmp_path):
    with pytest.raises(ValueError, match="at least one panel"):
        save_report_figure([], {}, tmp_path / "fig.png")


@pytest.mark.parametrize("tiles", [4, 64])
def test_text_is_legible_at_the_natural_size(tmp_path, tiles):
    """Titles at least 2% of the figure height, small or wide (the 2-RF report is ~2000 px)."""
    grid = image_grid(torch.zeros(tiles, 1, 8, 8))
    panels = [("Hb", grid), ("Hb", grid), ("Hb", grid)]
    out = save_report_figure(panels, {"x": [(1, 2.0), (2, 1.0)]}, tmp_path / "fig.png")
    picture = Image.open(out).convert("L")
    top = picture.crop((0, 0, grid.width // 2, picture.height // 8))  # the first title
    rows = [y for y in range(top.height) if min(top.crop((0, y, top.width, y + 1)).getdata()) < 128]
    assert rows, "no title text found"
    assert (rows[-1] - rows[0] + 1) >= 0.02 * picture.height
