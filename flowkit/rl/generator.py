"""A pretrained image flow as a noisy K-step Euler chain, for fine-tuning against a reward.

The same chain as :class:`flowkit.rl.policy.NoisyFlowPolicy`, with no observation: the
velocity field ``v`` of a flowkit model trained on the rectified path (flowkit's time:
``t = 0`` noise, ``t = 1`` data), on the grid ``t_k = k / K``,

    x_0 ~ N(0, I),
    mu_k = x_k + v(x_k, t_k) / K,
    x_{k+1} ~ N(mu_k, diag sigma_k^2),        sigma_k = sigma(t_k)  (per step and channel),

    log p(x_0..x_K) = log N(x_0; 0, I) + sum_k sum_j log N(x_{k+1,j}; mu_{k,j}, sigma_{k,j}^2)

(:func:`~flowkit.rl.policy.chain_log_prob`, :func:`~flowkit.rl.policy.sample_chain`). The
noise "net" is a table ``h`` ``(K, C)``, one entry per grid time and channel, mapped into
``[sigma_min, sigma_max]`` by :func:`~flowkit.rl.policy.bounded_sigma`; on a fixed grid a
function of ``t`` is exactly such a table. It starts at zero (the geometric middle of the
bounds). The fine-tuned sample is the noise-free chain (``sigma = 0``), i.e. Euler with K
steps, which is what the saved pipeline samples with ``--nfe K``.

KL to the frozen pretrained model: the two chains share ``x_0``'s law and, by construction
here, ``sigma``; each transition kernel is ``N(mu_k, sigma_k^2)`` against
``N(mu_ref_k, sigma_k^2)``, whose KL is exactly ``sum_j (mu - mu_ref)_j^2 / (2 sigma_j^2)``.
Summed over the steps at the chain's own states it is the chain's KL (by the chain rule);
at stored chains it is that KL's Monte-Carlo estimate under the behaviour chain.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowkit.rl.policy import (
    ChainSample,
    bounded_sigma,
    chain_log_prob,
    check_noise_bounds,
    sample_chain,
    time_grid,
)

__all__ = ["NoisyFlowGenerator", "Reward", "digits_class_reward", "load_velocity_model",
           "step_kl"]  # fmt: skip

Reward = Callable[[Tensor], Tensor]
"""``x`` ``(B, C, H, W)`` (or ``(B, D)``) in ``[-1, 1]`` -> rewards ``(B,)``."""


def load_velocity_model(source: str | os.PathLike):
    """``flowkit.load(source)``, refused unless it is a flowkit velocity field on the
    rectified path (the chain's mean ``x + v / K`` is an Euler step only for those).

    Raises:
        FileNotFoundError: nothing saved at ``source``.
        ValueError: a model on another path, with another prediction, class-conditional,
            or not a flowkit model (the message names what it is).
    """
    from flowkit.loading import load

    what = f"generator.model={str(source)!r}"
    try:
        loaded = load(source)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{what}: {error}; train one first (flowkit train configs/digits.yaml --out "
            "runs/digits) or pass --set generator.model=RUN"
        ) from error
    if loaded.kind != "flowkit":
        raise ValueError(
            f"{what} is a {loaded.kind} model; ReinFlow fine-tunes flowkit velocity fields on "
            "the rectified path (a run of objective.path: rectified, model.prediction: velocity)"
        )
    path_name = getattr(loaded.path, "name", None)
    if path_name != "rectified" or loaded.prediction != "velocity":
        raise ValueError(
            f"{what} predicts {loaded.prediction!r} on the {path_name!r} path; the noisy Euler "
            "chain x + v(x, t) / K needs a velocity field on the 'rectified' path (train one "
            "with objective.path: rectified and model.prediction: velocity)"
        )
    if loaded.num_classes is not None:
        raise ValueError(f"{what} is class-conditional ({loaded.num_classes} classes); only "
                         "unconditional generators are fine-tuned")  # fmt: skip
    return loaded


def step_kl(means: Tensor, reference: Tensor, sigmas: Tensor) -> Tensor:
    """``sum_{k,j} (mu - mu_ref)^2 / (2 sigma^2)``: the exact KL between the chains' Gaussian
    kernels of equal ``sigma``, summed over steps and dimensions: ``(B, K, *D)`` means,
    ``sigmas`` broadcastable -> ``(B,)``."""
    per = (means - reference).square() / (2 * sigmas.expand_as(means).square())
    return per.reshape(per.shape[0], -1).sum(dim=1)


class NoisyFlowGenerator(nn.Module):
    """A velocity field run as a noisy K-step Euler chain (module docstring for the math).

    Args:
        field: the velocity network ``field(x, t) -> x.shape``, ``t`` ``(B,)`` in [0, 1]
            (trained in place; kept in eval mode: no dropout, fixed normalisation, so the
            same chain always scores the same).
        sample_shape: ``D``, one sample's shape (``(C, H, W)`` or ``(dim,)``).
        steps: K.
        sigma_min, sigma_max: the noise bounds (``0 < sigma_min <= sigma_max``).
    """

    def __init__(
        self,
        field: nn.Module,
        sample_shape: tuple[int, ...],
        steps: int = 4,
        sigma_min: float = 0.02,
        sigma_max: float = 0.2,
    ) -> None:
        super().__init__()
        time_grid(steps)
        check_noise_bounds(sigma_min, sigma_max)
        self.field = field.eval()
        self.sample_shape, self.steps = tuple(sample_shape), steps
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        channels = self.sample_shape[0] if len(self.sample_shape) == 3 else 1
        self.noise = nn.Parameter(torch.zeros(steps, channels))
        self._unit = (1,) * (len(self.sample_shape) - 1)  # broadcast a channel over H, W

    def train(self, mode: bool = True) -> NoisyFlowGenerator:
        super().train(mode)
        self.field.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.noise.device

    def sigmas(self, batch: int) -> Tensor:
        """``sigma_k`` per step and channel, ``(B, K, C, 1, 1)`` (images) or ``(B, K, 1)``."""
        sig = bounded_sigma(self.noise, self.sigma_min, self.sigma_max)
        return sig.view(1, self.steps, -1, *self._unit).expand(batch, -1, -1, *self._unit)

    def _check_chain(self, chain: Tensor) -> None:
        expected = (self.steps + 1, *self.sample_shape)
        if chain.ndim != len(expected) + 1 or tuple(chain.shape[1:]) != expected:
            raise ValueError(f"chain must have shape (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(chain.shape)}")  # fmt: skip

    def means(self, chain: Tensor, field: nn.Module | None = None) -> Tensor:
        """``mu_k = x_k + v(x_k, t_k) / K`` at every step of stored chains, in one batched
        call of ``field`` (default: this generator's): ``(B, K + 1, *D) -> (B, K, *D)``."""
        self._check_chain(chain)
        batch, k = chain.shape[0], self.steps
        x = chain[:, :k].reshape(batch * k, *self.sample_shape)
        t = time_grid(k, chain.device).repeat(batch)  # batch-major, as x
        v = (field or self.field)(x, t)
        return (x + v / k).view(batch, k, *self.sample_shape)

    def sample(self, batch: int, generator: torch.Generator | None = None) -> ChainSample:
        """A noisy chain from ``x_0 ~ N(0, I)``: ``(B, K + 1, *D)`` and its log-likelihood."""
        k, grid = self.steps, time_grid(self.steps, self.device)
        x0 = torch.randn(batch, *self.sample_shape, generator=generator, device=self.device)

        def step_mean(x: Tensor, i: int) -> Tensor:
            return x + self.field(x, grid[i].expand(batch)) / k

        return sample_chain(x0, step_mean, self.sigmas(batch), generator)

    def log_prob(self, chain: Tensor) -> Tensor:
        """The exact log-likelihood of stored chains ``(B, K + 1, *D) -> (B,)``."""
        return chain_log_prob(chain, self.means(chain), self.sigmas(chain.shape[0]))

    @torch.no_grad()
    def deterministic(self, x0: Tensor) -> Tensor:
        """The noise-free chain (Euler, K steps) from ``x0`` ``(B, *D)`` -> ``(B, *D)``."""
        x, k = x0.to(self.device), self.steps
        grid = time_grid(k, self.device)
        for i in range(k):
            x = x + self.field(x, grid[i].expand(x.shape[0])) / k
        return x

    def frozen_copy(self) -> nn.Module:
        """A frozen copy of the field (the KL reference)."""
        return copy.deepcopy(self.field).requires_grad_(False).eval()


def digits_class_reward(target: int, weights: str | os.PathLike | None = None) -> Reward:
    """The digits classifier's probability of class ``target``: images ``(B, 1, 8, 8)`` in
    ``[-1, 1]`` -> ``softmax(logits)[:, target]`` ``(B,)``. ``weights``: a classifier file
    (:func:`flowkit.evaluation.classifiers.load_classifier`; default: the shipped digits
    network that the digits FID features come from)."""
    from flowkit.evaluation.classifiers import load_classifier
    from flowkit.evaluation.features import shipped_weights

    classifier = load_classifier(weights or shipped_weights("digits")).eval()
    classifier.requires_grad_(False)
    classes = classifier.config["num_classes"]
    if not 0 <= target < classes:
        raise ValueError(f"reward.target={target}; expected a class in 0..{classes - 1}")
    shape = classifier.input_shape

    @torch.no_grad()
    def reward(x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != shape:
            want = ", ".join(map(str, shape))
            raise ValueError(
                f"the digits reward takes images (B, {want}), got {tuple(x.shape)}; use a "
                "digits (8x8, 1 channel) generator"
            )
        logits = classifier.to(x.device)(x.clamp(-1, 1))
        return torch.softmax(logits, dim=1)[:, target]

    return reward
