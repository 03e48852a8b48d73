"""FeatureStats: streaming and merged moments, files on disk, two processes under torchrun."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import flowkit.evaluation.stats as stats_module
from flowkit.evaluation.stats import FeatureStats, ReferenceStats, load_stats

WORKER = Path(__file__).with_name("stats_worker.py")


def features(n: int = 300, d: int = 16, offset: float = 0.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + offset


def exact(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Two-pass float64 mean and unbiased covariance (numpy)."""
    a = x.numpy()
    return a.mean(axis=0), np.cov(a, rowvar=False)


@pytest.mark.parametrize("row_block", [256, 5])  # one GEMM, or blocks of the upper triangle
def test_merged_halves_equal_the_whole_and_batching_does_not_matter(
    row_block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stats_module, "ROW_BLOCK", row_block)
    x = features()
    whole = FeatureStats.from_features(x)
    first, second = FeatureStats(16), FeatureStats(16)
    for batch in x[:130].split(17):
        first.update(batch)
    for batch in x[130:].split(50):
        second.update(batch)
    merged = first.merge(second)
    mu, cov = exact(x)
    for stats in (whole, merged):
        assert stats.count == 300
        np.testing.assert_allclose(stats.mean.numpy(), mu, rtol=0, atol=1e-12 * abs(mu).max())
        np.testing.assert_allclose(stats.covariance.numpy(), cov, rtol=0, atol=1e-12 * cov.max())
    assert torch.equal(whole.covariance, whole.covariance.T)


def test_large_common_offset_keeps_float64_accuracy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_module, "ROW_BLOCK", 3)
    # |mu| / std ~ 1e4: the raw-moment form (sum x x^T - n mu mu^T) loses ~8 digits here.
    x = features(offset=1e4)
    stats = FeatureStats(16)
    for batch in x.split(64):
        stats.update(batch)
    mu, cov = exact(x)
    np.testing.assert_allclose(stats.covariance.numpy(), cov, rtol=0, atol=1e-12 * cov.max())
    raw = (x.T @ x - 300 * torch.outer(x.mean(0), x.mean(0))) / 299
    assert np.abs(raw.numpy() - cov).max() > 1e-9 * cov.max()  # the check can fail


def test_float32_input_and_errors() -> None:
    x = features(n=20, d=4)
    stats = FeatureStats(4).update(x.float())
    assert stats.mean.dtype == torch.float64 and stats.covariance.shape == (4, 4)
    with pytest.raises(ValueError, match=r"\(N, 4\), got \(20, 5\)"):
        stats.update(torch.zeros(20, 5))
    with pytest.raises(ValueError, match="count=1"):
        _ = FeatureStats(4).update(x[:1]).covariance
    with pytest.raises(ValueError, match="extractor 'digits' into .* extractor 'inception'"):
        FeatureStats(4, "inception").merge(FeatureStats(4, "digits"))
    with pytest.raises(ValueError, match="5 features into .* 4 features"):
        FeatureStats(4).merge(FeatureStats(5))
    assert FeatureStats(4).update(x).all_reduce().count == 20  # no process group: no-op


def test_save_load_round_trip_is_atomic(tmp_path: Path) -> None:
    stats = FeatureStats.from_features(features(), extractor="digits")
    path = tmp_path / "ref"  # no suffix: the name stays as given
    stats.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref"]
    ref = load_stats(path)
    assert ref.extractor == "digits" and ref.count == 300
    assert np.array_equal(ref.mu, stats.mean.numpy())
    assert np.array_equal(ref.sigma, stats.covariance.numpy())
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"mu", "sigma", "extractor", "count"}
    ref.save(tmp_path / "again.npz")
    again = ReferenceStats.load(tmp_path / "again.npz")
    assert np.array_equal(again.sigma, ref.sigma) and (again.extractor, again.count) == (
        "digits",
        300,
    )


def test_plain_pytorch_fid_file_loads(tmp_path: Path) -> None:
    mu, sigma = np.arange(3, dtype=np.float32), np.eye(3, dtype=np.float32)
    np.savez_compressed(tmp_path / "fid_stats.npz", mu=mu, sigma=sigma)
    ref = load_stats(tmp_path / "fid_stats.npz")
    assert ref.extractor == "unknown" and ref.count is None
    assert ref.mu.dtype == np.float64 and np.array_equal(ref.sigma, np.eye(3))


def test_broken_files_are_named(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError, match="garbage.npz"):
        load_stats(garbage)
    text = tmp_path / "text.npz"
    text.write_text("mu sigma")
    with pytest.raises(ValueError, match="text.npz"):
        load_stats(text)
    np.savez(tmp_path / "nomu.npz", sigma=np.eye(2))
    with pytest.raises(ValueError, match=r"nomu.npz.*missing \['mu'\]"):
        load_stats(tmp_path / "nomu.npz")
    np.savez(tmp_path / "pickled.npz", mu=np.zeros(2), sigma=np.array([{}, {}], dtype=object))
    with pytest.raises(ValueError, match="pickled.npz"):
        load_stats(tmp_path / "pickled.npz")
    np.savez(tmp_path / "shape.npz", mu=np.zeros(2), sigma=np.eye(3))
    with pytest.raises(ValueError, match=r"shape.npz.*\(3, 3\)"):
        load_stats(tmp_path / "shape.npz")
    truncated = tmp_path / "truncated.npz"
    FeatureStats.from_features(features()).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:-200])
    with pytest.raises(ValueError, match="truncated.npz"):
        load_stats(truncated)
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load_stats(tmp_path / "absent.npz")
    assert zipfile.is_zipfile(tmp_path / "nomu.npz")


@pytest.mark.parametrize("launcher", [pytest.param("torchrun", marks=pytest.mark.slow), "fork"])
def test_two_processes_all_reduce_to_the_whole(tmp_path: Path, launcher: str, fork_ranks) -> None:
    """The worker under torchrun (slow), and in two ranks forked from this process with
    torchrun's environment (the default suite's fast counterpart; same asserts)."""
    sys.path.insert(0, str(WORKER.parent))
    try:
        from stats_worker import DIM, data
    finally:
        sys.path.pop(0)
    if launcher == "fork":
        fork_ranks(WORKER, [tmp_path])
    else:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node=2", str(WORKER), str(tmp_path)]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
    mu, cov = exact(data())
    for case in ("unequal", "lonely"):
        for rank in (0, 1):
            ref = load_stats(tmp_path / f"{case}-rank{rank}.npz")
            assert ref.count == 200 and ref.extractor == "toy" and ref.mu.shape == (DIM,)
            np.testing.assert_allclose(ref.mu, mu, rtol=0, atol=1e-12 * abs(mu).max())
            np.testing.assert_allclose(ref.sigma, cov, rtol=0, atol=1e-12 * abs(cov).max())
