"""The noisy flow policy: a K-step Euler chain with learned, bounded Gaussian noise.

ReinFlow (Zhang et al. 2025) makes the Euler chain of a flow policy stochastic, so that the
probability of the chain it took is exact. On the time grid ``t_k = k / K``
(``k = 0..K-1``, one grid for acting and for scoring):

    a_0 ~ N(0, I),
    mu_k = a_k + v(a_k, t_k, s) / K,
    a_{k+1} ~ N(mu_k, diag sigma_k^2),        sigma_k = sigma(t_k, s),

    log p(a_0..a_K | s) = log N(a_0; 0, I) + sum_k sum_j log N(a_{k+1,j}; mu_{k,j}, sigma_{k,j}^2).

The noise net's output ``h`` is bounded by the tanh parameterisation of the log variance

    log sigma^2 = log sigma_min^2 + (log sigma_max^2 - log sigma_min^2) (tanh h + 1) / 2,

so ``sigma`` lies in ``[sigma_min, sigma_max]`` for every input. The entropy of the chain's
Gaussian steps is ``sum_k sum_j (1/2) log(2 pi e sigma_{k,j}^2)``.

Actions live in the policy's box: the chain's last state ``a_K`` is the *pre-squash*
action, and the environment receives ``low + (clip(a_K, -1, 1) + 1) (high - low) / 2``
(:class:`ActionBounds`). The likelihood is that of the chain, so clipping happens only on
the way to the environment, identically for acting and evaluation; scoring reads the
stored chain. The noise-free action (evaluation, behaviour cloning) is the same chain with
``sigma = 0``, from a given ``a_0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flowkit.rl.networks import NoiseNet, VelocityNet

__all__ = [
    "ActionBounds",
    "ChainSample",
    "NoisyFlowPolicy",
    "bounded_sigma",
    "chain_log_prob",
    "normal_log_prob",
    "sample_chain",
    "std_normal_log_prob",
    "time_grid",
]

LOG_2PI = math.log(2 * math.pi)


def time_grid(steps: int, device: torch.device | str | None = None) -> Tensor:
    """The chain's times ``t_k = k / K``, ``k = 0..K-1`` (``(K,)``): the one grid that both
    acting and scoring use."""
    if steps < 1:
        raise ValueError(f"the chain needs at least 1 step, got steps={steps}")
    return torch.arange(steps, device=device, dtype=torch.float32) / steps


def check_noise_bounds(sigma_min: float, sigma_max: float) -> None:
    """``0 < sigma_min <= sigma_max`` or a :class:`ValueError` naming both."""
    if not sigma_min > 0:
        raise ValueError(
            f"sigma_min={sigma_min} must be > 0 (the chain's log-likelihood needs noise); "
            "set policy.sigma_min to a small positive number such as 0.01"
        )
    if sigma_min > sigma_max:
        raise ValueError(
            f"sigma_min={sigma_min} > sigma_max={sigma_max}: the noise bounds are reversed; "
            "set policy.sigma_min <= policy.sigma_max (e.g. 0.10 and 0.24)"
        )


def bounded_sigma(h: Tensor, sigma_min: float, sigma_max: float) -> Tensor:
    """``sigma = exp(log_var / 2)`` with ``log_var`` the tanh interpolation of
    ``[log sigma_min^2, log sigma_max^2]`` at ``(tanh h + 1) / 2``; any shape."""
    check_noise_bounds(sigma_min, sigma_max)
    lo, hi = 2 * math.log(sigma_min), 2 * math.log(sigma_max)
    log_var = lo + (hi - lo) * (torch.tanh(h) + 1) / 2
    return torch.exp(0.5 * log_var).clamp(sigma_min, sigma_max)  # clamp: rounding only


@dataclass
class ActionBounds:
    """The map from the policy's box ``[-1, 1]^A`` to the environment's ``[low, high]``."""

    low: Tensor
    high: Tensor

    @classmethod
    def from_space(cls, space) -> ActionBounds:
        """From a gymnasium ``Box`` (finite bounds)."""
        low = torch.as_tensor(space.low, dtype=torch.float32).flatten()
        high = torch.as_tensor(space.high, dtype=torch.float32).flatten()
        if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise ValueError(
                f"the action space {space} has infinite bounds; a flow policy needs a "
                "bounded Box to clip its actions into"
            )
        return cls(low, high)

    def to_env(self, a: Tensor) -> Tensor:
        """``(B, A)`` pre-squash actions -> environment actions (clipped into the box)."""
        u = a.clamp(-1.0, 1.0)
        return self.low.to(a) + (u + 1) * (self.high - self.low).to(a) / 2

    def from_env(self, action: Tensor) -> Tensor:
        """Environment actions -> the policy's box (for demonstrations)."""
        return 2 * (action - self.low.to(action)) / (self.high - self.low).to(action) - 1


@dataclass
class ChainSample:
    """A sampled chain: ``chain`` ``(B, K + 1, A)`` (``a_0 .. a_K``), its exact
    ``log_prob`` ``(B,)``; ``action`` is ``a_K`` (pre-squash)."""

    chain: Tensor
    log_prob: Tensor

    @property
    def action(self) -> Tensor:
        return self.chain[:, -1]


class NoisyFlowPolicy(nn.Module):
    """A flow policy run as a noisy K-step Euler chain (module docstring for the math).

    Args:
        obs_dim, action_dim: sizes of the (normalised) observation and of the action.
        steps: K, the number of Euler steps.
        sigma_min, sigma_max: the noise bounds (``0 < sigma_min <= sigma_max``); the upper
            one may follow a schedule (:meth:`set_noise_bounds`).
        hidden_dim, num_layers: the velocity net's residual MLP.
        noise_hidden_dim, noise_layers: the noise net's.
    """

    kind = "flow"

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        steps: int = 4,
        sigma_min: float = 0.10,
        sigma_max: float = 0.24,
        hidden_dim: int = 256,
        num_layers: int = 3,
        noise_hidden_dim: int = 128,
        noise_layers: int = 2,
    ) -> None:
        super().__init__()
        time_grid(steps)  # checks steps
        check_noise_bounds(sigma_min, sigma_max)
        self.obs_dim, self.action_dim, self.steps = obs_dim, action_dim, steps
        self.init_kwargs = {"obs_dim": obs_dim, "action_dim": action_dim, "steps": steps,
                            "sigma_min": sigma_min, "sigma_max": sigma_max,
                            "hidden_dim": hidden_dim, "num_layers": num_layers,
                            "noise_hidden_dim": noise_hidden_dim,
                            "noise_layers": noise_layers}  # fmt: skip
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.velocity = VelocityNet(obs_dim, action_dim, hidden_dim, num_layers)
        self.noise = NoiseNet(obs_dim, action_dim, noise_hidden_dim, noise_layers)

    def set_noise_bounds(self, sigma_min: float, sigma_max: float) -> None:
        """Change the bounds (the noise schedule); keep them fixed between acting and
        scoring a rollout, or the first PPO ratio is not 1."""
        check_noise_bounds(sigma_min, sigma_max)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    # -- pieces ----------------------------------------------------------------------------
    def _check_obs(self, obs: Tensor) -> None:
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs must have shape (B, {self.obs_dim}), got {tuple(obs.shape)}")

    def sigmas(self, obs: Tensor) -> Tensor:
        """``sigma(t_k, s)`` for every step: ``(B, S) -> (B, K, A)``."""
        self._check_obs(obs)
        batch, k = obs.shape[0], self.steps
        t = time_grid(k, obs.device).repeat(batch)  # (B*K,), batch-major
        h = self.noise(t, obs.repeat_interleave(k, dim=0))
        return bounded_sigma(h, self.sigma_min, self.sigma_max).view(batch, k, -1)

    def means(self, obs: Tensor, chain: Tensor) -> Tensor:
        """``mu_k = a_k + v(a_k, t_k, s) / K`` for every step of given chains:
        ``(B, S), (B, K + 1, A) -> (B, K, A)`` (one batched call of the velocity net)."""
        batch, k = obs.shape[0], self.steps
        a = chain[:, :k].reshape(batch * k, -1)
        t = time_grid(k, obs.device).repeat(batch)
        v = self.velocity(a, t, obs.repeat_interleave(k, dim=0))
        return (a + v / k).view(batch, k, -1)

    # -- acting and scoring ----------------------------------------------------------------
    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> ChainSample:
        """Run the noisy chain from ``a_0 ~ N(0, I)``; return it and its log-likelihood."""
        self._check_obs(obs)
        batch, k = obs.shape[0], self.steps
        grid = time_grid(k, obs.device)
        sig = self.sigmas(obs)
        a0 = torch.randn(batch, self.action_dim, generator=generator, device=obs.device)

        def step_mean(a: Tensor, i: int) -> Tensor:
            return a + self.velocity(a, grid[i].expand(batch), obs) / k

        return sample_chain(a0, step_mean, sig, generator)

    def log_prob(self, obs: Tensor, chain: Tensor) -> Tensor:
        """The exact log-likelihood of stored chains: ``(B, S), (B, K + 1, A) -> (B,)``."""
        self._check_obs(obs)
        expected = (obs.shape[0], self.steps + 1, self.action_dim)
        if tuple(chain.shape) != expected:
            raise ValueError(f"chain must have shape {expected}, got {tuple(chain.shape)}")
        return chain_log_prob(chain, self.means(obs, chain), self.sigmas(obs))

    def entropy(self, obs: Tensor) -> Tensor:
        """Entropy of the chain's Gaussian steps, ``sum_{k,j} log(2 pi e sigma^2) / 2``:
        ``(B, S) -> (B,)``."""
        sig = self.sigmas(obs)
        return (0.5 * (LOG_2PI + 1) + torch.log(sig)).sum(dim=(1, 2))

    def deterministic(self, obs: Tensor, a0: Tensor | None = None) -> Tensor:
        """The noise-free chain (``sigma = 0``) from ``a0`` (zeros when None): ``(B, A)``
        pre-squash actions."""
        self._check_obs(obs)
        batch, k = obs.shape[0], self.steps
        grid = time_grid(k, obs.device)
        a = torch.zeros(batch, self.action_dim, device=obs.device) if a0 is None else a0
        for i in range(k):
            a = a + self.velocity(a, grid[i].expand(batch), obs) / k
        return a

    def forward(self, obs: Tensor, chain: Tensor) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(obs, chain)


def normal_log_prob(x: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """``sum_j log N(x_j; mu_j, sigma_j^2)`` over the last axis (``sigma`` broadcast)."""
    z = (x - mu) / sigma
    return (-0.5 * z.square() - torch.log(sigma) - 0.5 * LOG_2PI).sum(dim=-1)


def std_normal_log_prob(x: Tensor) -> Tensor:
    """``sum_j log N(x_j; 0, 1)`` over the last axis."""
    return (-0.5 * x.square() - 0.5 * LOG_2PI).sum(dim=-1)


def chain_log_prob(chain: Tensor, means: Tensor, sigmas: Tensor) -> Tensor:
    """The exact log-likelihood of chains given their step means and noise scales:

        log N(x_0; 0, I) + sum_k sum_j log N(x_{k+1,j}; mu_{k,j}, sigma_{k,j}^2).

    Shapes: ``chain`` ``(B, K + 1, *D)``, ``means`` ``(B, K, *D)`` (``mu_k`` from ``x_k``),
    ``sigmas`` broadcastable to ``means`` (e.g. ``(B, K, C, 1, 1)`` per channel) -> ``(B,)``.
    ``D`` is an action ``(A,)`` for a policy or an image ``(C, H, W)`` for a generator."""
    batch, k = means.shape[:2]
    if tuple(chain.shape) != (batch, k + 1, *means.shape[2:]):
        raise ValueError(f"chain {tuple(chain.shape)} does not fit means {tuple(means.shape)}; "
                         "expected (B, K + 1, *D) for means (B, K, *D)")  # fmt: skip
    sig = sigmas.expand_as(means).reshape(batch, k, -1)
    steps = normal_log_prob(chain[:, 1:].reshape(batch, k, -1), means.reshape(batch, k, -1), sig)
    return std_normal_log_prob(chain[:, 0].reshape(batch, -1)) + steps.sum(dim=1)


def sample_chain(
    x0: Tensor,
    step_mean: Callable[[Tensor, int], Tensor],
    sigmas: Tensor,
    generator: torch.Generator | None = None,
) -> ChainSample:
    """Run the noisy chain ``x_{k+1} = mu_k + sigma_k eps_k``, ``eps_k ~ N(0, I)``, from
    ``x0`` ``(B, *D)`` (drawn from ``N(0, I)`` by the caller), with
    ``mu_k = step_mean(x_k, k)`` and ``sigmas`` ``(B, K, ...)`` broadcastable per step to
    ``(B, *D)``; the log-likelihood is accumulated along the way (as
    :func:`chain_log_prob` computes it from the stored chain). Returns the chain
    ``(B, K + 1, *D)`` and its log-likelihood ``(B,)``."""
    batch, k = x0.shape[0], sigmas.shape[1]
    x = x0
    states, log_prob = [x], std_normal_log_prob(x.reshape(batch, -1))
    for i in range(k):
        mu = step_mean(x, i)
        eps = torch.randn(x.shape, generator=generator, device=x.device)
        sig = sigmas[:, i].expand_as(mu)
        x = mu + sig * eps
        flat = (x.reshape(batch, -1), mu.reshape(batch, -1), sig.reshape(batch, -1))
        log_prob = log_prob + normal_log_prob(*flat)
        states.append(x)
    return ChainSample(torch.stack(states, dim=1), log_prob)
