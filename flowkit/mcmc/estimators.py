r"""Noise-level estimators for denoising MCMC: ``p(s | y)`` over a geometric grid of levels.

The grid (Kim & Ye's code): ``s_k = s_min (s_max / s_min)^{tau_k}``, ``tau = linspace(1, 1e-3,
K)``, so level 0 is the noisiest (``s_max``) and level ``K - 1`` the cleanest (about
``s_min``). Levels are in the VE scale ``s = sigma / alpha`` of :mod:`flowkit.mcmc.levels`.

- :class:`NoiseLevelClassifier`: a network ``y -> logits (B, K)`` trained with cross-entropy
  on ``(x + s_k eps, k)``, ``k`` uniform, ``eps ~ N(0, I)`` (:func:`noise_level_loss`); its
  input is the rescaled state ``y``, plus the feature ``log(|y|^2 / d)``. A diffusers
  ``ModelMixin`` / ``ConfigMixin``: ``save_pretrained`` writes ``config.json`` and
  safetensors; the config records the data shape and the grid, checked on use
  (:meth:`NoiseLevelClassifier.check_compatible`).
- :class:`ClassifierEstimator`: the Gibbs step ``s ~ p(s | y)`` from the classifier, either
  its MAP level (``gibbs="map"``, the authors' code) or a draw from its posterior
  (``gibbs="posterior"``, the paper's text; inverse-CDF sampling with a seeded uniform per
  chain). Its calls are counted apart from the score network's.
- :class:`ScoreNormEstimator`: training-free. If ``y = x + s' eps`` in ``d`` dimensions and the
  denoiser at level ``s`` recovers ``x``, then ``|y - D(y, s)|^2 ~ s'^2 d`` and
  ``score_y(y, s) = (D - y) / s^2``, so ``s' ~ s^2 |score_y(y, s)| / sqrt(d)``, snapped to the
  nearest grid level in ``log s``. It reads the score the Langevin step has already computed
  (no extra network call). It is exact in the large-noise limit and biased low near the data
  scale (for ``N(0, c^2 I)`` data at ``s' = s`` it returns ``s / sqrt(1 + c^2 / s^2)``), which
  pulls chains toward lower levels: a heuristic, not the posterior.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from flowkit.solvers.noise import MCMC_GIBBS_STREAM, random_words, sample_keys


def level_grid(num_levels: int = 1000, s_min: float = 0.01, s_max: float = 50.0) -> Tensor:
    """``(K,)`` float64 levels ``s_min (s_max/s_min)^{tau_k}``, ``tau = linspace(1, 1e-3, K)``
    (decreasing: index 0 is ``s_max``)."""
    if num_levels < 2 or not 0 < s_min < s_max:
        raise ValueError(
            f"need num_levels >= 2 and 0 < s_min < s_max, got {num_levels}, {s_min}, {s_max}"
        )
    tau = torch.linspace(1.0, 1e-3, num_levels, dtype=torch.float64)
    return s_min * (s_max / s_min) ** tau


def nearest_level(levels: Tensor, s: Tensor) -> Tensor:
    """``(B,)`` long: the index of the grid level nearest to each ``s`` in ``log s``.

    ``levels`` is a strictly monotone ``(K,)`` grid (:func:`level_grid` decreases); a binary
    search, ``O(B log K)``, with ties going to the lower index as ``argmin`` would."""
    log_levels = levels.to(torch.float64).log().to(s.device)
    log_s = s.to(torch.float64).clamp_min(1e-300).log()
    count = log_levels.numel()
    descending = bool(log_levels[0] > log_levels[-1])
    ascending = log_levels.flip(0) if descending else log_levels
    upper = torch.searchsorted(ascending, log_s).clamp(1, count - 1)
    lower = upper - 1
    below, above = log_s - ascending[lower], ascending[upper] - log_s
    # the lower index of the original grid wins a tie: `upper` when the grid decreases
    take_lower = below < above if descending else below <= above
    nearest = torch.where(take_lower, lower, upper)
    return count - 1 - nearest if descending else nearest


def _log_norm(y: Tensor) -> Tensor:
    d = y[0].numel()
    return torch.log(y.flatten(1).pow(2).sum(1) / d + 1e-8)[:, None]


class NoiseLevelClassifier(ModelMixin, ConfigMixin):
    """``y (B, *sample_shape) -> logits (B, num_levels)`` over :func:`level_grid`.

    Vector data (``len(sample_shape) == 1``): an MLP of ``depth`` hidden layers of width
    ``hidden`` (SiLU). Images ``(C, H, W)``: ``depth`` 3x3 convolutions of ``channels``
    channels with average pooling, then a linear head. Both see ``log(|y|^2 / d)`` as an
    extra input feature.
    """

    @register_to_config
    def __init__(
        self,
        sample_shape: tuple[int, ...] | list[int] = (2,),
        num_levels: int = 1000,
        s_min: float = 0.01,
        s_max: float = 50.0,
        hidden: int = 256,
        depth: int = 3,
        channels: int = 32,
    ) -> None:
        super().__init__()
        shape = tuple(int(s) for s in sample_shape)
        self.register_buffer("levels", level_grid(num_levels, s_min, s_max), persistent=False)
        if len(shape) == 1:
            layers: list[nn.Module] = []
            width = shape[0] + 1
            for _ in range(depth):
                layers += [nn.Linear(width, hidden), nn.SiLU()]
                width = hidden
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(width, num_levels)
        elif len(shape) == 3:
            convs: list[nn.Module] = []
            width = shape[0]
            for _ in range(depth):
                convs += [nn.Conv2d(width, channels, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2, 2,
                          ceil_mode=True)]  # fmt: skip
                width = channels
            convs += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            self.body = nn.Sequential(*convs)
            self.head = nn.Sequential(nn.Linear(width + 1, hidden), nn.SiLU(),
                                      nn.Linear(hidden, num_levels))  # fmt: skip
        else:
            raise ValueError(f"sample_shape must be (D,) or (C, H, W), got {shape}")
        self.sample_shape = shape

    def forward(self, y: Tensor) -> Tensor:
        """Logits ``(B, num_levels)`` for rescaled states ``y (B, *sample_shape)``."""
        feature = _log_norm(y)
        if len(self.sample_shape) == 1:
            return self.head(self.body(torch.cat([y, feature], dim=1)))
        return self.head(torch.cat([self.body(y), feature], dim=1))

    def check_compatible(self, sample_shape: tuple[int, ...], levels: Tensor | None = None) -> None:
        """Raise ``ValueError`` naming the mismatch if this classifier was trained for another
        data shape or another level grid."""
        if tuple(sample_shape) != self.sample_shape:
            raise ValueError(
                f"the noise-level estimator was trained for samples of shape {self.sample_shape}, "
                f"but the model makes samples of shape {tuple(sample_shape)}"
            )
        if levels is not None:
            mine = self.levels.to("cpu", torch.float64)
            other = levels.to("cpu", torch.float64)
            if mine.shape != other.shape or not torch.allclose(mine, other, rtol=1e-9):
                c = self.config
                raise ValueError(
                    f"the noise-level estimator's grid (num_levels={c.num_levels}, "
                    f"s_min={c.s_min}, s_max={c.s_max}) differs from the sampler's grid "
                    f"({other.numel()} levels from {float(other[0]):.6g} to "
                    f"{float(other[-1]):.6g})"
                )


def noise_level_loss(
    classifier: nn.Module,
    x1: Tensor,
    generator: torch.Generator | None = None,
    levels: Tensor | None = None,
) -> Tensor:
    """Per-sample cross-entropy ``(B,)`` of the classifier on ``y = x1 + s_k eps``, ``k`` uniform
    on the grid (the authors' training objective). ``levels``: the grid, default the
    classifier's own (pass it for a wrapped classifier: DDP, ``torch.compile``)."""
    levels = (classifier.levels if levels is None else levels).to(x1.device, x1.dtype)
    k = torch.randint(0, len(levels), (x1.shape[0],), generator=generator, device=x1.device)
    eps = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    s = levels[k].reshape(-1, *([1] * (x1.dim() - 1)))
    return nn.functional.cross_entropy(classifier(x1 + s * eps), k, reduction="none")


def fit_noise_level_classifier(
    classifier: NoiseLevelClassifier,
    data: Tensor,
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
) -> NoiseLevelClassifier:
    """Train ``classifier`` in place with Adam on :func:`noise_level_loss` over minibatches
    of ``data (N, *sample_shape)`` (drawn with replacement, seeded); returns it in eval mode.
    A minimal loop for small problems; ``flowkit train`` with ``objective.kind: noise_level``
    trains the same loss (:class:`flowkit.mcmc.objective.NoiseLevelObjective`) with the
    trainer's EMA, checkpoints and resume."""
    generator = torch.Generator(device=data.device).manual_seed(seed)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    classifier.train()
    for _ in range(steps):
        pick = torch.randint(0, len(data), (batch_size,), generator=generator, device=data.device)
        loss = noise_level_loss(classifier, data[pick], generator=generator).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return classifier.eval()


class ClassifierEstimator:
    """Gibbs step on the level from a :class:`NoiseLevelClassifier` (module docstring).

    Args:
        classifier: the trained classifier (its grid is the sampler's grid).
        gibbs: ``"map"`` (argmax, the authors' code) or ``"posterior"`` (a draw).

    Attributes:
        calls: classifier evaluations made (counted apart from the score network's NFE).
    """

    needs_score = False

    def __init__(self, classifier: NoiseLevelClassifier, gibbs: str = "map") -> None:
        if gibbs not in ("map", "posterior"):
            raise ValueError(f"gibbs must be 'map' or 'posterior', got {gibbs!r}")
        self.classifier, self.gibbs, self.calls = classifier, gibbs, 0
        self.levels = classifier.levels.to(torch.float64)

    def __call__(self, y: Tensor, chains: list[int], seed: int, step: int) -> Tensor:
        """``(B,)`` level indices for states ``y``; chain ``chains[b]``'s ``step``-th draw."""
        with torch.no_grad():
            param = next(self.classifier.parameters())
            logits = self.classifier(y.to(param.device, param.dtype))
        self.calls += 1
        if self.gibbs == "map":
            return logits.argmax(dim=1).to(y.device)
        probs = torch.softmax(logits.double(), dim=1).cpu()
        keys = sample_keys(seed, chains, MCMC_GIBBS_STREAM)
        words = random_words(keys, step, 1)[:, 0] >> np.uint64(11)
        u = torch.from_numpy(words.astype(np.float64) * 2.0**-53)
        cdf = probs.cumsum(dim=1)
        index = (cdf < u[:, None] * cdf[:, -1:]).sum(dim=1).clamp_max(probs.shape[1] - 1)
        return index.to(y.device)


class ScoreNormEstimator:
    """Training-free level estimate ``s' = s^2 |score_y(y, s)| / sqrt(d)`` (module docstring).

    Attributes:
        calls: always 0 (it reuses the chain's score evaluation).
    """

    needs_score = True
    gibbs = "score_norm"

    def __init__(self, levels: Tensor) -> None:
        self.levels = levels.to(torch.float64)
        self.calls = 0

    def estimate(self, s: Tensor, score_y: Tensor) -> Tensor:
        """``(B,)`` continuous estimates ``s^2 |score_y| / sqrt(d)``."""
        d = score_y[0].numel()
        norm = score_y.flatten(1).to(torch.float64).norm(dim=1)
        return s.to(torch.float64) ** 2 * norm / math.sqrt(d)

    def __call__(self, s: Tensor, score_y: Tensor) -> Tensor:
        """``(B,)`` the nearest grid level of :meth:`estimate`."""
        return nearest_level(self.levels, self.estimate(s, score_y)).to(score_y.device)


def load_estimator(source: str | os.PathLike) -> NoiseLevelClassifier:
    """A saved :class:`NoiseLevelClassifier` (safetensors only) from ``source``: its own
    folder (``config.json`` + weights), a ``flowkit train`` run of ``objective.kind:
    noise_level`` (which saves it as ``RUN/pipeline/``), or a directory holding
    ``estimator/`` (a saved ``DMCMCPipeline``, or a run of one)."""
    root = Path(source)
    folder = estimator_dir(root)
    if folder is None:
        raise FileNotFoundError(
            f"no noise-level estimator in {str(root)!r}: expected config.json and "
            "diffusion_pytorch_model.safetensors there, under pipeline/ (a run of "
            "objective.kind noise_level) or under estimator/"
        )
    config = json.loads((folder / "config.json").read_text())
    if config.get("_class_name") != "NoiseLevelClassifier":
        name = config.get("_class_name")
        raise ValueError(
            f"{str(folder / 'config.json')!r} is a {name!r}, not a NoiseLevelClassifier"
        )
    return NoiseLevelClassifier.from_pretrained(folder, use_safetensors=True).eval()


def estimator_dir(root: str | os.PathLike) -> Path | None:
    """The folder under ``root`` holding a saved classifier's ``config.json`` (``root``,
    ``root/pipeline``, ``root/estimator``, ``root/pipeline/estimator``: the first that has a
    ``config.json``), or None."""
    root = Path(root)
    candidates = (root, root / "pipeline", root / "estimator", root / "pipeline" / "estimator")
    for folder in candidates:
        if (folder / "config.json").is_file():
            return folder
    return None


def is_estimator(root: str | os.PathLike) -> bool:
    """Whether ``root`` (or its ``pipeline/``) is a saved :class:`NoiseLevelClassifier`."""
    root = Path(root)
    for folder in (root, root / "pipeline"):
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and config.get("_class_name") == "NoiseLevelClassifier":
            return True
    return False
