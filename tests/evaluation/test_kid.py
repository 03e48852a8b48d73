"""KID: the torchmetrics estimator on one subset, unbiasedness, sensitivity to a shift."""

import pytest
import torch

from flowkit.evaluation.kid import kid, polynomial_mmd2


def gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def test_one_subset_of_everything_matches_torchmetrics() -> None:
    from torchmetrics.image.kid import poly_mmd

    a, b = gaussian(120, 10, 0), gaussian(120, 10, 1, shift=0.3)
    mean, std = kid(a, b, num_subsets=1, subset_size=120)
    assert mean == pytest.approx(float(poly_mmd(a, b)), rel=1e-10)
    assert std == 0.0


def test_unbiased_on_identical_distributions() -> None:
    # Independent data sets: the estimates are i.i.d. with mean MMD^2 = 0.
    n, d, draws = 100, 8, 40
    estimates = torch.tensor(
        [kid(gaussian(n, d, 2 * i), gaussian(n, d, 2 * i + 1), 1, n)[0] for i in range(draws)]
    )
    stderr = float(estimates.std()) / draws**0.5
    assert abs(float(estimates.mean())) < 4 * stderr
    # The biased (V-statistic) estimator would sit many standard errors above 0.
    x, y = gaussian(n, d, 0), gaussian(n, d, 1)
    k = lambda p, q: (p @ q.T / d + 1) ** 3  # noqa: E731
    biased = float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
    assert biased - float(polynomial_mmd2(x, y)) > 10 * stderr


def test_clearly_positive_for_shifted_distributions_and_seeded() -> None:
    a, b = gaussian(600, 8, 3), gaussian(600, 8, 4, shift=0.5)
    mean, std = kid(a, b, num_subsets=20, subset_size=200, seed=1)
    assert mean > 5 * std > 0  # std over subsets, not the standard error of the mean
    assert kid(a, b, num_subsets=20, subset_size=200, seed=1) == (mean, std)
    assert kid(a, b, num_subsets=20, subset_size=200, seed=2) != (mean, std)
    same, _ = kid(a, gaussian(600, 8, 5), num_subsets=20, subset_size=200)
    assert abs(same) < mean / 10


def test_subset_size_is_clipped_with_a_warning_and_shapes_checked() -> None:
    a, b = gaussian(50, 4, 6), gaussian(80, 4, 7)
    with pytest.warns(UserWarning, match="subset_size=1000 exceeds .* using subset_size=50"):
        kid(a, b, num_subsets=2)
    with pytest.raises(ValueError, match=r"\(50, 4\) and \(80, 5\)"):
        kid(a, gaussian(80, 5, 8))
