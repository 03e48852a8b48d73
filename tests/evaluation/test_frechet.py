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


def eigh_reference(cov1: torch.Tensor, cov2: torch.Tensor) -> float:
    """The former path: Cholesky of either side, else a full ``eigh`` square-root factor."""
    factor, info = torch.linalg.cholesky_ex(cov1)
    other = cov2
    if int(info) != 0:
        factor, info = torch.linalg.cholesky_ex(cov2)
        other = cov1
    if int(info) != 0:
        w, v = torch.linalg.eigh(cov1)
        w = torch.where(w > w.amax() * cov1.shape[0] * torch.finfo(w.dtype).eps, w, 0.0)
        factor, other = v * w.sqrt(), cov2
    product = factor.T @ other @ factor
    lam = torch.linalg.eigvalsh((product + product.T) / 2)
    lam = torch.where(lam > lam.amax() * lam.shape[0] * torch.finfo(lam.dtype).eps, lam, 0.0)
    return float(cov1.trace() + cov2.trace() - 2 * lam.sqrt().sum())


@pytest.mark.parametrize("n1, n2", [(400, 300), (60, 300), (60, 90), (300, 40)])
@pytest.mark.parametrize("lapack", [True, False])
def test_rank_deficient_path_equals_the_eigh_path(n1, n2, lapack, monkeypatch) -> None:
    """Full rank (N > D), one side and both sides rank deficient (N < D): the pivoted
    Cholesky (CPU) and truncated eigh (other devices) factors give the former value."""
    from scipy.linalg import lapack as scipy_lapack

    if not lapack:  # the off-CPU route: dpstrf reports an error, eigh takes over
        monkeypatch.setattr(scipy_lapack, "dpstrf", lambda a, lower: (a, None, 0, -1))
    g = torch.Generator().manual_seed(n1 + n2)
    d = 128
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    x = torch.randn(n1, d, generator=g, dtype=torch.float64) @ mix
    y = torch.randn(n2, d, generator=g, dtype=torch.float64) @ mix * 1.2 + 0.1
    c1, c2 = torch.cov(x.T), torch.cov(y.T)
    zero = torch.zeros(d, dtype=torch.float64)
    value = frechet_distance(zero, c1, zero, c2)
    reference = eigh_reference(c1, c2)
    assert value == pytest.approx(reference, rel=1e-10, abs=1e-10 * float(c1.trace()))
    assert frechet_distance(zero, c2, zero, c1) == pytest.approx(reference, rel=1e-10)
    # the hint skips the Cholesky attempt; the value is the same, full rank or not
    hinted = frechet_distance(zero, c1, zero, c2, rank_deficient=True)
    assert hinted == pytest.approx(reference, rel=1e-10, abs=1e-10 * float(c1.trace()))


def test_fid_from_stats_factors_the_side_with_fewer_samples_than_dimensions(monkeypatch) -> None:
    import flowkit.evaluation.frechet as frechet

    g = torch.Generator().manual_seed(11)
    few = FeatureStats.from_features(torch.randn(30, 64, generator=g, dtype=torch.float64))
    many = FeatureStats.from_features(torch.randn(500, 64, generator=g, dtype=torch.float64) + 1)
    seen = []
    original = frechet.trace_sqrt_product
    monkeypatch.setattr(
        frechet,
        "trace_sqrt_product",
        lambda c1, c2, rank_deficient=False: seen.append(rank_deficient) or original(c1, c2),
    )
    expected = eigh_reference(few.covariance, many.covariance)
    expected += float((few.mean - many.mean).square().sum())
    for a, b in ((few, many), (many, few)):
        assert fid_from_stats(a, b) == pytest.approx(expected, rel=1e-10)
    assert seen == [True, True]
    assert fid_from_stats(many, many) == pytest.approx(0.0, abs=1e-8) and seen[-1] is False
