"""Distributions of the training time ``t`` in ``(0, 1)``.

flowkit's time runs from ``t = 0`` (noise ``x0``) to ``t = 1`` (data ``x1``). A
:class:`TimeSampler` draws a batch of times ``(n,)`` (float32) and knows its exact
density and CDF, for tests and plots. Kinds:

- ``"uniform"``: ``t ~ U[eps, 1]``, ``eps = 1e-3`` (Liu et al., rectified flow).
- ``"logit_normal"``: ``t = sigmoid(n)``, ``n ~ N(mean, std^2)``, ``mean = 0``, ``std = 1``
  (Esser et al., SD3). Density
  ``p(t) = phi((logit t - mean) / std) / (std t (1 - t))``.
- ``"u_shaped"``: 2-RF++ (Lee et al.): ``p(u) = a (e^{a u} + e^{a (1 - u)}) / (2 (e^a - 1))``
  on ``[0, 1]``, ``a = 4`` (``p(0) = p(1) = 2.0746``, ``p(0.5) = 0.5514``), an equal mixture
  of ``a e^{a u} / (e^a - 1)`` and its mirror, drawn by inverse CDF. The draw is then
  rescaled into ``[clip, 1 - clip]``: ``t = u (1 - 2 clip) + clip``, ``clip = 1e-5``; the
  density and CDF include the rescale. Symmetric, so the same in either time convention.
- ``"lognormal"``: EDM's (Karras et al.) noise levels ``ln sigma ~ N(mean, std^2)``,
  ``mean = -1.2``, ``std = 1.2``, mapped to the rectified path. There
  ``x_t = t x1 + (1 - t) x0 = t (x1 + sigma x0)`` with ``sigma = (1 - t) / t``, so
  ``t = 1 / (1 + sigma) = sigmoid(-ln sigma)``: ``t`` is logit-normal with mean ``-mean``
  and the same ``std``.
- ``"k_step"``: Liu et al.'s k-step distillation: ``t`` uniform on the grid
  ``{0, 1/k, ..., (k-1)/k}``, ``k = 1`` by default, so the network learns the Euler
  steps ``x_{t+1/k} = x_t + v(x_t, t) / k`` of a k-step sampler (``k = 1``: the one-step
  map ``T(z0) = z0 + v(z0, 0)``). Discrete: it has a CDF but no density.

Draws use only the generator passed in (never the global RNG), so a seeded generator
gives the same times on every run and device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

KINDS = ("uniform", "logit_normal", "u_shaped", "lognormal", "k_step")
_DEFAULTS: dict[str, dict[str, float]] = {
    "uniform": {"eps": 1e-3},
    "logit_normal": {"mean": 0.0, "std": 1.0},
    "u_shaped": {"a": 4.0, "clip": 1e-5},
    "lognormal": {"mean": -1.2, "std": 1.2},
    "k_step": {"k": 1},
}


def _check_params(kind: str, params: dict[str, float]) -> None:
    """Raise ``ValueError`` naming any parameter outside its valid range."""
    if kind == "uniform" and not 0 <= params["eps"] < 1:
        raise ValueError(f"uniform: eps={params['eps']} must lie in [0, 1)")
    if kind in ("logit_normal", "lognormal"):
        if not params["std"] > 0:
            raise ValueError(f"{kind}: std={params['std']} must be > 0")
        if not math.isfinite(params["mean"]):
            raise ValueError(f"{kind}: mean={params['mean']} must be finite")
    if kind == "k_step" and not (params["k"] >= 1 and float(params["k"]).is_integer()):
        raise ValueError(f"k_step: k={params['k']} must be an integer >= 1")
    if kind == "u_shaped":
        if not params["a"] > 0:
            raise ValueError(f"u_shaped: a={params['a']} must be > 0")
        if not 0 <= params["clip"] < 0.5:
            raise ValueError(f"u_shaped: clip={params['clip']} must lie in [0, 0.5)")


class TimeSampler:
    """Sample training times ``t`` in ``(0, 1)`` from one of :data:`KINDS`.

    Args:
        kind: ``"uniform"`` (kw ``eps``), ``"logit_normal"`` (kw ``mean``, ``std``),
            ``"u_shaped"`` (kw ``a``, ``clip``), ``"lognormal"`` (kw ``mean``, ``std``
            of ``ln sigma``) or ``"k_step"`` (kw ``k``). See the module docstring for the
            math and defaults.

    Attributes:
        kind: the kind's name.
        params: every parameter of the kind, defaults filled in.
    """

    def __init__(self, kind: str, **kw: float) -> None:
        if kind not in _DEFAULTS:
            raise ValueError(f"unknown time sampler kind {kind!r}; expected one of {list(KINDS)}")
        unknown = sorted(set(kw) - set(_DEFAULTS[kind]))
        if unknown:
            expected = sorted(_DEFAULTS[kind])
            raise ValueError(f"{kind}: unknown parameter(s) {unknown}; expected some of {expected}")
        params = {name: float(kw.get(name, default)) for name, default in _DEFAULTS[kind].items()}
        _check_params(kind, params)
        self.kind = kind
        self.params = params

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self.params.items())
        return f"TimeSampler({self.kind!r}, {args})"

    def _logit_normal(self) -> tuple[float, float]:
        """``(mean, std)`` of ``logit t`` for the two logit-normal kinds."""
        sign = -1.0 if self.kind == "lognormal" else 1.0
        return sign * self.params["mean"], self.params["std"]

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``n`` times, shape ``(n,)``, float32, on ``device``.

        The random numbers are drawn on the generator's device (the default device when
        ``generator`` is None) in float64 and then moved, so a CPU generator can feed a
        GPU batch and gives the same times as on a CPU.
        """
        if n < 0:
            raise ValueError(f"n={n} must be >= 0")
        draw_device = generator.device if generator is not None else device
        options = {"generator": generator, "device": draw_device, "dtype": torch.float64}
        if self.kind == "uniform":
            eps = self.params["eps"]
            t = eps + (1 - eps) * torch.rand(n, **options)
        elif self.kind == "u_shaped":
            a, clip = self.params["a"], self.params["clip"]
            uniform = torch.rand(2, n, **options)
            # Inverse CDF of a e^{a u} / (e^a - 1): u = log(1 + U (e^a - 1)) / a, written so
            # that large a does not overflow; the mirror component takes 1 - u.
            u = 1 + torch.log(uniform[0] + (1 - uniform[0]) * math.exp(-a)) / a
            u = torch.where(uniform[1] < 0.5, u, 1 - u)
            t = u * (1 - 2 * clip) + clip
        elif self.kind == "k_step":
            k = int(self.params["k"])
            t = torch.randint(k, (n,), generator=generator, device=draw_device) / k
        else:
            mean, std = self._logit_normal()
            t = torch.sigmoid(mean + std * torch.randn(n, **options))
        return t.to(device=device, dtype=torch.float32)

    def density(self, t: Tensor) -> Tensor:
        """The exact pdf ``p(t)``, elementwise, zero outside the support (float64).

        Raises:
            ValueError: for ``"k_step"``, a discrete law without a density.
        """
        if self.kind == "k_step":
            raise ValueError("the k_step time law is discrete: it has a cdf but no density")
        t = torch.as_tensor(t, dtype=torch.float64)
        if self.kind == "uniform":
            eps = self.params["eps"]
            inside = (t >= eps) & (t <= 1)
            return inside.to(torch.float64) / (1 - eps)
        if self.kind == "u_shaped":
            a, clip = self.params["a"], self.params["clip"]
            scale = 1 - 2 * clip
            inside = (t >= clip) & (t <= 1 - clip)
            u = ((t - clip) / scale).clamp(0, 1)
            # a (e^{a u} + e^{a(1-u)}) / (2 (e^a - 1)), divided through by e^a for stability.
            pdf = a * (torch.exp(a * (u - 1)) + torch.exp(-a * u)) / (2 * -math.expm1(-a))
            return torch.where(inside, pdf / scale, 0.0)
        mean, std = self._logit_normal()
        inside = (t > 0) & (t < 1)
        safe = torch.where(inside, t, 0.5)
        z = (torch.logit(safe) - mean) / std
        pdf = torch.exp(-0.5 * z**2) / (math.sqrt(2 * math.pi) * std * safe * (1 - safe))
        return torch.where(inside, pdf, 0.0)

    def cdf(self, t: Tensor) -> Tensor:
        """The exact CDF ``P(T <= t)``, elementwise (float64)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if self.kind == "uniform":
            eps = self.params["eps"]
            return ((t - eps) / (1 - eps)).clamp(0, 1)
        if self.kind == "u_shaped":
            a, clip = self.params["a"], self.params["clip"]
            u = ((t - clip) / (1 - 2 * clip)).clamp(0, 1)
            # [(e^{a u} - 1) + (e^a - e^{a (1 - u)})] / (2 (e^a - 1)), divided through by e^a.
            numerator = torch.exp(a * (u - 1)) - math.exp(-a) + 1 - torch.exp(-a * u)
            return numerator / (2 * -math.expm1(-a))
        if self.kind == "k_step":
            k = self.params["k"]
            return ((torch.floor(t * k) + 1) / k).clamp(0, 1)
        mean, std = self._logit_normal()
        z = (torch.logit(t.clamp(0, 1)) - mean) / std
        return torch.special.ndtr(z)
