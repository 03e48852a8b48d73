import pytest
import torch
from torch.utils.data import DataLoader

from flowkit.data import InMemoryDataset


def images(n=16):
    # Asymmetric rows so that a flip is always visible.
    return torch.arange(n * 3 * 4 * 5, dtype=torch.float32).reshape(n, 3, 4, 5)


def test_attributes():
    ds = InMemoryDataset(images(), torch.arange(16) % 5)
    assert len(ds) == 16
    assert ds.sample_shape == (3, 4, 5)
    assert ds.is_image and ds.num_classes == 5
    points = InMemoryDataset(torch.zeros(7, 2))
    assert points.sample_shape == (2,) and not points.is_image
    assert points.num_classes is None and points.labels is None


def test_items_are_tuples_and_collate():
    x, y = images(), torch.arange(16) % 4
    item = InMemoryDataset(x, y)[3]
    assert len(item) == 2 and torch.equal(item[0], x[3]) and item[1] == y[3]
    (xi,) = InMemoryDataset(x)[3]
    assert torch.equal(xi, x[3])
    xb, yb = next(iter(DataLoader(InMemoryDataset(x, y), batch_size=4)))
    assert torch.equal(xb, x[:4]) and torch.equal(yb, y[:4])


def test_batch_flips_exactly_the_samples_the_generator_draws():
    x, y = images(), torch.arange(16)
    ds = InMemoryDataset(x, y, random_flip=True)
    idx = torch.tensor([5, 0, 5, 9, 3, 12, 1, 15, 2, 7])
    xb, yb = ds.batch(idx, torch.Generator().manual_seed(0))
    flip = torch.rand(len(idx), generator=torch.Generator().manual_seed(0)) < 0.5
    assert 0 < flip.sum() < len(idx)
    expected = torch.where(flip[:, None, None, None], x[idx].flip(-1), x[idx])
    assert torch.equal(xb, expected)
    assert torch.equal(yb, y[idx])
    again, _ = ds.batch(idx, torch.Generator().manual_seed(0))
    assert torch.equal(again, xb)


def test_batch_without_flip_or_for_points_is_a_gather():
    x = images()
    idx = torch.tensor([3, 1, 4])
    xb, yb = InMemoryDataset(x).batch(idx, torch.Generator().manual_seed(0))
    assert torch.equal(xb, x[idx]) and yb is None
    pts = torch.randn(10, 2)
    pb, _ = InMemoryDataset(pts, random_flip=True).batch(idx)
    assert torch.equal(pb, pts[idx])


@pytest.mark.parametrize(
    ("x", "labels", "match"),
    [
        (torch.zeros(5), None, "ndim"),
        (torch.zeros(5, 2), torch.zeros(4, dtype=torch.long), r"\(5,\)"),
        (torch.zeros(5, 2), torch.zeros(5), "integer"),
        (torch.zeros(5, 2), torch.tensor([0, 1, -1, 0, 1]), ">= 0"),
    ],
)
def test_invalid_inputs(x, labels, match):
    with pytest.raises(ValueError, match=match):
        InMemoryDataset(x, labels)
