"""Fréchet distance: closed forms, scipy (pytorch-fid) reference, rank deficiency, torchmetrics."""

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn

from flowkit.evaluation.frechet import fid_from_stats, frechet_distance
from flowkit.evaluation.stats import FeatureStats, ReferenceStats


def random_spd(d: int, g: torch.Generator, floor: float = 0.1) -> torch.Tensor:
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return a @ a.T + floor * torch.eye(d, dtype=torch.float64)


def pytorch_fid(mu1, sigma1, mu2, sigma2) -> float:
    """The pytorch-fid formula: ``scipy.linalg.sqrtm`` of the non-symmetric product."""
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def test_diagonal_covariances_match_the_closed_form() -> None:
    g = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.randn(32, generator=g).double(), torch.randn(32, generator=g).double()
    a, b = torch.rand(32, generator=g).double() + 0.1, torch.rand(32, generator=g).double() * 3
    expected = (mu1 - mu2).square().sum() + (a.sqrt() - b.sqrt()).square().sum()
    value = frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
    assert value == pytest.approx(float(expected), rel=1e-12)


def test_commuting_and_identical_covariances() -> None:
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(24, 24, generator=g, dtype=torch.float64))
    a, b = torch.rand(24, generator=g).double() + 0.5, torch.rand(24, generator=g).double() + 0.5
    c1, c2 = q @ torch.diag(a) @ q.T, q @ torch.diag(b) @ q.T
    mu = torch.randn(24, generator=g, dtype=torch.float64)
    expected = float((a.sqrt() - b.sqrt()).square().sum()) + 4.0 * 24  # mean shift of 2 each
    assert frechet_distance(mu, c1, mu + 2.0, c2) == pytest.approx(expected, rel=1e-10)
    assert abs(frechet_distance(mu, c1, mu, c1)) < 1e-10 * float(c1.trace())


def test_agrees_with_scipy_sqrtm_and_accepts_numpy() -> None:
    g = torch.Generator().manual_seed(2)
    c1, c2 = random_spd(64, g), random_spd(64, g)
    mu1, mu2 = torch.randn(64, generator=g).double(), torch.randn(64, generator=g).double()
    arrays = [t.numpy() for t in (mu1, c1, mu2, c2)]
    reference = pytorch_fid(*arrays)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(reference, rel=1e-6)
    assert frechet_distance(*arrays) == pytest.approx(reference, rel=1e-6)
    assert frechet_distance(*arrays) == pytest.approx(frechet_distance(mu2, c2, mu1, c1), rel=1e-9)


def sample_space_reference(x: torch.Tensor, y: torch.Tensor) -> float:
    """Exact FID of the sample statistics of ``x``, ``y`` through the small sample space.

    With centred data ``A``, ``B`` and ``C1 = A^T A / (n-1)``, ``C2 = B^T B / (m-1)``, the
    nonzero eigenvalues of ``C1 C2`` are the squared singular values of ``A B^T`` over
    ``(n-1)(m-1)``, so ``tr sqrt(C1 C2) = ||A B^T||_* / sqrt((n-1)(m-1))``.
    """
    a, b = x - x.mean(0), y - y.mean(0)
    n, m = x.shape[0], y.shape[0]
    cross = torch.linalg.svdvals(a @ b.T).sum() / ((n - 1) * (m - 1)) ** 0.5
    traces = a.square().sum() / (n - 1) + b.square().sum() / (m - 1)
    return float((x.mean(0) - y.mean(0)).square().sum() + traces - 2 * cross)


@pytest.mark.parametrize("n_second", [50, 400])
def test_rank_deficient_covariances_are_finite_and_accurate(n_second: int) -> None:
    g = torch.Generator().manual_seed(3)
    mix = torch.randn(128, 128, generator=g, dtype=torch.float64) / 128**0.5
    x = torch.randn(50, 128, generator=g, dtype=torch.float64) @ mix
    y = torch.randn(n_second, 128, generator=g, dtype=torch.float64) @ mix * 1.3 + 0.2
    sx, sy = FeatureStats.from_features(x), FeatureStats.from_features(y)
    value = frechet_distance(sx.mean, sx.covariance, sy.mean, sy.covariance)
    assert np.isfinite(value)
    # scipy sqrtm and torchmetrics are off by ~5e-8 here; the eigvalsh route by ~1e-15.
    assert value == pytest.approx(sample_space_reference(x, y), rel=1e-10)
    same = frechet_distance(sx.mean, sx.covariance, sx.mean, sx.covariance)
    assert abs(same) < 1e-6 * float(sx.covariance.trace())


def test_bad_shapes_and_values_are_named() -> None:
    mu, cov = torch.zeros(4), torch.eye(4)
    with pytest.raises(ValueError, match=r"cov2 must have shape \(4, 4\).*\(3, 3\)"):
        frechet_distance(mu, cov, mu, torch.eye(3))
    with pytest.raises(ValueError, match=r"\(4,\) and \(5,\)"):
        frechet_distance(mu, cov, torch.zeros(5), cov)
    with pytest.raises(ValueError, match="mu2 holds non-finite"):
        frechet_distance(mu, cov, torch.full((4,), float("nan")), cov)


def test_fid_from_stats_checks_extractors() -> None:
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(100, 8, generator=g), torch.randn(100, 8, generator=g) + 1
    a = FeatureStats.from_features(x, extractor="inception")
    b = FeatureStats.from_features(y, extractor="digits")
    with pytest.raises(ValueError, match="'digits'.*'inception'|'inception'.*'digits'"):
        fid_from_stats(a, b)
    ref = b.to_reference()
    plain = ReferenceStats(ref.mu, ref.sigma)  # a pytorch-fid file: extractor unknown
    expected = frechet_distance(a.mean, a.covariance, b.mean, b.covariance)
    assert fid_from_stats(a, plain) == pytest.approx(expected, rel=1e-12)
    assert fid_from_stats(a, FeatureStats.from_features(y, "inception")) == pytest.approx(
        expected, rel=1e-12
    )


class RandomFeatures(nn.Module):
    """Random net: images (B, 1, 8, 8) -> 64 features; ``num_features`` for torchmetrics."""

    num_features = 64

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 96), nn.Tanh(), nn.Linear(96, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_custom_network_fid_matches_torchmetrics() -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    network = RandomFeatures().eval()
    g = torch.Generator().manual_seed(6)
    real = torch.rand(600, 1, 8, 8, generator=g)
    fake = (torch.rand(600, 1, 8, 8, generator=g) * 0.8 + 0.15).clamp(0, 1)
    metric = FrechetInceptionDistance(feature=network, normalize=True)
    sr, sf = FeatureStats(64, "random"), FeatureStats(64, "random")
    with torch.no_grad():
        for r, f in zip(real.split(128), fake.split(128), strict=True):
            metric.update(r, real=True)
            metric.update(f, real=False)
            sr.update(network(r))
            sf.update(network(f))
    expected = float(metric.compute())
    assert expected > 0.01
    assert fid_from_stats(sr, sf) == pytest.approx(expected, rel=1e-4)
