"""FID from 2048-dimensional features: flowkit against pytorch-fid's scipy formula and torchmetrics.

Three measurements, in one run, on the same data:

(a) From statistics ``(mu, sigma)`` of two feature sets: flowkit ``frechet_distance``
    (Cholesky + ``eigvalsh`` of the symmetric product), the pytorch-fid formula
    (``scipy.linalg.sqrtm(sigma1 @ sigma2)``, real part) and torchmetrics' ``_compute_fid``
    (``eigvals`` of the non-symmetric product) — what ``FrechetInceptionDistance.compute`` runs.
(b) From two sets of ``--num`` feature vectors fed in batches: flowkit ``FeatureStats.update``
    + ``fid_from_stats`` against ``FrechetInceptionDistance(feature=Identity())``
    ``update`` + ``compute`` (a feature "network" that returns its input, with
    ``num_features``, so both see the very same float32 features). Only the ``update`` calls are
    timed; the features are generated chunk by chunk from seeded generators (correlated
    Gaussians: rank-64 structure plus per-dimension noise), so memory stays at one chunk.
(c) Extraction throughput: a small feature network on 28x28 images (flowkit's ``"mnist"``
    extractor when available, else a local CNN) through ``FeatureStats`` against its bare
    forward pass, interleaved rounds, median.

(d) ``--only rank``: the Fréchet distance with fewer samples than dimensions (covariances of
    ``--rank-num`` = 2000 features of D = 2048, rank 1999) against the full-rank case (6144
    features), flowkit (pivoted Cholesky when singular) vs the former eigh fallback vs
    torchmetrics' ``_compute_fid``; interleaved rounds, median process CPU time and wall time.

    python benchmarks/fid.py                      # 2 x 50k features
    python benchmarks/fid.py --num 20000 --out benchmarks/results/fid.md
    python benchmarks/fid.py --only rank --threads 1 --out benchmarks/results/fid_rank.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import scipy
import torch
import torchmetrics
from scipy import linalg
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance, _compute_fid

from flowkit.evaluation.frechet import fid_from_stats, frechet_distance
from flowkit.evaluation.stats import FeatureStats


class Identity(nn.Module):
    """Feature "network" that returns its input: lets torchmetrics take features directly."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FeatureSource:
    """Seeded correlated Gaussian features ``z W + s * e + mu``; chunk ``i`` is reproducible."""

    def __init__(self, dim: int, seed: int, rank: int = 64) -> None:
        g = torch.Generator().manual_seed(seed)
        self.seed, self.rank = seed, rank
        self.weight = torch.randn(rank, dim, generator=g) / rank**0.5
        self.scale = torch.rand(dim, generator=g) * 0.5 + 0.05
        self.mu = torch.rand(dim, generator=g) * 0.5

    def chunk(self, index: int, size: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        z = torch.randn(size, self.rank, generator=g)
        e = torch.randn(size, self.weight.shape[1], generator=g)
        return torch.relu(z @ self.weight + e * self.scale + self.mu)  # non-negative, like pool3


def pytorch_fid(mu1, sigma1, mu2, sigma2) -> float:
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def rel(a: float, b: float) -> str:
    return f"{abs(a - b) / abs(b):.1e}"


def from_features(args) -> tuple[list[str], FeatureStats, FeatureStats]:
    sources = [FeatureSource(args.dim, 1), FeatureSource(args.dim, 2)]
    stats = [FeatureStats(args.dim, "synthetic"), FeatureStats(args.dim, "synthetic")]
    metric = FrechetInceptionDistance(feature=Identity(args.dim))
    t_flowkit = t_metric = 0.0
    chunks = -(-args.num // args.batch)
    for i in range(chunks):
        size = min(args.batch, args.num - i * args.batch)
        for s, source in enumerate(sources):
            x = source.chunk(i, size)
            order = ("flowkit", "torchmetrics") if (i + s) % 2 == 0 else ("torchmetrics", "flowkit")
            for who in order:
                if who == "flowkit":
                    t_flowkit += timed(lambda x=x, s=s: stats[s].update(x))[1]
                else:
                    t_metric += timed(lambda x=x, s=s: metric.update(x, real=s == 0))[1]
    fk_value, fk_compute = timed(lambda: fid_from_stats(stats[0], stats[1]))
    tm_value, tm_compute = timed(lambda: float(metric.compute()))
    rows = [
        "| method | update s | compute s | total s | FID | rel. diff to flowkit |",
        "|---|---:|---:|---:|---:|---:|",
        f"| flowkit `FeatureStats` + `fid_from_stats` | {t_flowkit:.2f} | {fk_compute:.2f} | "
        f"{t_flowkit + fk_compute:.2f} | {fk_value:.10g} | — |",
        f"| torchmetrics `FrechetInceptionDistance` | {t_metric:.2f} | {tm_compute:.2f} | "
        f"{t_metric + tm_compute:.2f} | {tm_value:.10g} | {rel(tm_value, fk_value)} |",
    ]
    return rows, stats[0], stats[1]


def from_statistics(a: FeatureStats, b: FeatureStats) -> list[str]:
    mu1, s1, mu2, s2 = a.mean, a.covariance, b.mean, b.covariance
    n = [t.numpy() for t in (mu1, s1, mu2, s2)]
    fk, t_fk = timed(lambda: frechet_distance(mu1, s1, mu2, s2))
    sp, t_sp = timed(lambda: pytorch_fid(*n))
    tm, t_tm = timed(lambda: float(_compute_fid(mu1, s1, mu2, s2)))
    rows = [
        "| method | seconds | x flowkit | FID | rel. diff to flowkit |",
        "|---|---:|---:|---:|---:|",
        f"| flowkit `frechet_distance` (Cholesky + eigvalsh) | {t_fk:.2f} | 1.00 | {fk:.10g} | — |",
        f"| pytorch-fid (`scipy.linalg.sqrtm`) | {t_sp:.2f} | {t_sp / t_fk:.2f} | {sp:.10g} | "
        f"{rel(sp, fk)} |",
        f"| torchmetrics `_compute_fid` (eigvals) | {t_tm:.2f} | {t_tm / t_fk:.2f} | {tm:.10g} | "
        f"{rel(tm, fk)} |",
    ]
    return rows


def former_eigh_path(mu1, s1, mu2, s2) -> float:
    """flowkit's Fréchet distance before the pivoted Cholesky: Cholesky of either side, else a
    full ``eigh`` square-root factor of ``s1`` (the rank-deficient fallback)."""
    factor, info = torch.linalg.cholesky_ex(s1)
    other = s2
    if int(info) != 0:
        factor, info = torch.linalg.cholesky_ex(s2)
        other = s1
    if int(info) != 0:
        w, v = torch.linalg.eigh(s1)
        w = torch.where(w > w.amax() * s1.shape[0] * torch.finfo(w.dtype).eps, w, 0.0)
        factor, other = v * w.sqrt(), s2
    product = factor.T @ other @ factor
    lam = torch.linalg.eigvalsh((product + product.T) / 2)
    lam = torch.where(lam > lam.amax() * lam.shape[0] * torch.finfo(lam.dtype).eps, lam, 0.0)
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * lam.sqrt().sum())


def rank_deficient(args) -> list[str]:
    """(d): time of each method on rank-deficient and full-rank covariances, interleaved."""
    sources = [FeatureSource(args.dim, 1), FeatureSource(args.dim, 2)]
    cases = {}
    for label, num in (("rank-deficient", args.rank_num), ("full rank", 3 * args.dim)):
        feats = [src.chunk(0, num).double() for src in sources]
        cases[label] = [t for f in feats for t in (f.mean(0), torch.cov(f.T))]
    methods = {
        "flowkit `frechet_distance`": lambda c: frechet_distance(*c),
        "flowkit, hint from the count (as `fid_from_stats`)": lambda c: frechet_distance(
            *c, rank_deficient=c is cases["rank-deficient"]
        ),
        "former flowkit (eigh fallback)": lambda c: former_eigh_path(*c),
        "torchmetrics `_compute_fid`": lambda c: float(_compute_fid(*c)),
    }
    cpu = {(m, c): [] for m in methods for c in cases}
    wall = {(m, c): [] for m in methods for c in cases}
    value = {}
    jobs = [(m, c) for m in methods for c in cases]
    for r in range(args.rank_rounds):
        for m, c in jobs[r % len(jobs) :] + jobs[: r % len(jobs)]:  # rotate the order
            t0, w0 = time.process_time(), time.perf_counter()
            value[m, c] = methods[m](cases[c])
            cpu[m, c].append(time.process_time() - t0)
            wall[m, c].append(time.perf_counter() - w0)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    ref = med["flowkit `frechet_distance`", "full rank"]
    rows = [
        f"Covariances of {args.rank_num} (rank-deficient, rank {args.rank_num - 1}) and "
        f"{3 * args.dim} (full rank) features, D = {args.dim}; median of {args.rank_rounds} "
        "interleaved rounds. `x flowkit full rank` = CPU time over flowkit's full-rank time. "
        "The hint row passes `rank_deficient=True` for the covariance of N <= D samples (what "
        "`fid_from_stats` does from the counts), which skips the failing plain Cholesky.",
        "",
        "| method | covariances | CPU s | wall s | x flowkit full rank | FD "
        "| rel. diff to flowkit |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for m, c in jobs:
        fk = value["flowkit `frechet_distance`", c]
        rows.append(
            f"| {m} | {c} | {med[m, c]:.2f} | {statistics.median(wall[m, c]):.2f} | "
            f"{med[m, c] / ref:.2f} | {value[m, c]:.10g} | {rel(value[m, c], fk)} |"
        )
    return rows


def small_network() -> tuple[nn.Module, str]:
    try:
        from flowkit.evaluation.features import get_extractor

        return get_extractor("mnist"), '`get_extractor("mnist")` (64 features)'
    except Exception as err:  # the extractor module may be absent or its weights missing
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(1, 32, 3, 2, 1), nn.SiLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.SiLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 64),
        ).eval()  # fmt: skip
        return net, f"local CNN (64 features; extractor unavailable: {type(err).__name__})"


def throughput(args) -> list[str]:
    network, label = small_network()
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(args.image_batch, 1, 28, 28, generator=g) * 2 - 1 for _ in range(8)]
    with torch.no_grad():
        dim = network(images[0]).shape[1]

    def bare() -> None:
        with torch.no_grad():
            for x in images:
                network(x)

    def with_stats() -> None:
        stats = FeatureStats(dim)
        with torch.no_grad():
            for x in images:
                stats.update(network(x))
        _ = stats.covariance

    bare(), with_stats()  # warm-up
    times: dict[str, list[float]] = {"bare": [], "stats": []}
    for r in range(args.rounds):
        for name in ("bare", "stats") if r % 2 == 0 else ("stats", "bare"):
            times[name].append(timed(bare if name == "bare" else with_stats)[1])
    n = len(images) * args.image_batch
    t_bare, t_stats = statistics.median(times["bare"]), statistics.median(times["stats"])
    return [
        f"Network: {label}; {len(images)} batches of {args.image_batch} images 1x28x28, "
        f"median of {args.rounds} interleaved rounds.",
        "",
        "| pass | images/s | x bare |",
        "|---|---:|---:|",
        f"| bare forward | {n / t_bare:.0f} | 1.00 |",
        f"| forward + `FeatureStats.update` (+ covariance) | {n / t_stats:.0f} | "
        f"{t_stats / t_bare:.2f} |",
    ]


def machine(args) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {torch.get_num_threads()} torch thread(s); torch {torch.__version__}, "
        f"torchmetrics {torchmetrics.__version__}, scipy {scipy.__version__}, numpy "
        f"{np.__version__}; python {platform.python_version()}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=50_000, help="feature vectors per set")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1000, help="features per update call")
    parser.add_argument("--image-batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7, help="throughput rounds")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    parser.add_argument("--only", choices=["rank"], default=None, help="run only part (d)")
    parser.add_argument("--rank-num", type=int, default=2000, help="(d): samples, < --dim")
    parser.add_argument("--rank-rounds", type=int, default=3, help="(d): interleaved rounds")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmarks/fid.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None
    )
    if args.only == "rank":
        lines = [
            f"# Fréchet distance with fewer samples than dimensions (D = {args.dim})",
            "",
            f"Machine: {machine(args)} Load average before the run: {os.getloadavg()}.",
            f"Command: `{command}`",
            "",
            "## (d) Rank-deficient vs full-rank covariances",
            "",
            *rank_deficient(args),
        ]
        text = "\n".join(lines) + "\n"
        print(text)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
        return
    feature_rows, a, b = from_features(args)
    lines = [
        f"# FID from {args.dim}-dimensional features: flowkit, pytorch-fid (scipy), torchmetrics",
        "",
        f"Machine: {machine(args)}",
        f"Command: `{command}`",
        "",
        f"## (a) From statistics (D = {args.dim}, the statistics of (b))",
        "",
        *from_statistics(a, b),
        "",
        f"## (b) From 2 x {args.num} feature vectors (D = {args.dim}, batches of {args.batch})",
        "",
        "Only the update calls are timed (feature generation excluded); torchmetrics returns its",
        "FID cast to the features' dtype (float32), hence its ~1e-8 relative difference.",
        "",
        *feature_rows,
        "",
        "## (c) Extraction throughput through FeatureStats",
        "",
        *throughput(args),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
