"""The f-divergence family of f-distill, as data.

``D_f(p || q) = E_q[ f(p / q) ]`` with ``f`` convex and ``f(1) = 0``; ``p`` is the teacher's
(data) distribution, ``q`` the one-step generator's and ``r = p / q`` their density ratio.
With both noised to level ``t`` (``p_t``, ``q_t``, ``x_t = alpha_t G(z) + sigma_t eps``), Xu,
Nie & Vahdat (2025) show

    grad_theta D_f(p_t || q_t) = -E[ h(r_t) (grad log p_t(x_t) - grad log q_t(x_t)) dx_t/dtheta ]

with the weight ``h(r) = f''(r) r^2`` (:mod:`flowkit.distill.update` turns this into a loss).
The built-in members (``h`` in closed form; ``f`` chosen with ``f(1) = 0``; adding ``c (r - 1)``
to ``f`` changes neither the divergence nor ``h``):

=================  =========================================  ===============  ==========
name               f(r)                                       h(r)             normalised
=================  =========================================  ===============  ==========
reverse_kl         -log r                      (= KL(q || p))  1                no
softened_rkl       (r+1) log((r+1)/2) - r log r - log r        1/(r+1)          no
js                 r log r - (r+1) log((r+1)/2)  (= 2 JS)      r/(r+1)          no
squared_hellinger  (sqrt(r) - 1)^2                             sqrt(r)/2        no
forward_kl         r log r                     (= KL(p || q))  r                yes
jeffreys           (r - 1) log r               (KL both ways)  r + 1            yes
=================  =========================================  ===============  ==========

"normalised": ``h`` grows without bound as ``r`` does, so the generator update divides it by
its batch mean (``ALGORITHMS.md`` §6); the bounded ones are used as they are. A user adds a
divergence from ``f`` alone with :meth:`Divergence.from_f` (``h`` by automatic
differentiation) and, if it should be found by name, :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DIVERGENCES", "Divergence", "divergence", "register"]

Fn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Divergence:
    """One f-divergence.

    Attributes:
        name: its name in configs (``distill.divergence``).
        f: the generator function ``f(r)``, element-wise on a tensor of ratios ``r > 0``.
        h: the weight ``h(r) = f''(r) r^2``, element-wise.
        normalize: whether the generator update divides ``h`` by its batch mean (for the
            divergences whose ``h`` is unbounded).
    """

    name: str
    f: Fn
    h: Fn
    normalize: bool = False

    @classmethod
    def from_f(cls, name: str, f: Fn, normalize: bool = True) -> Divergence:
        """A divergence given by ``f`` alone: ``h(r) = f''(r) r^2`` by autograd (float64
        inside, returned in ``r``'s dtype). ``normalize`` defaults to True, the safe choice
        when nothing is known about how ``h`` grows."""

        def h(r: Tensor) -> Tensor:
            return second_derivative(f, r) * r.to(torch.float64).square()

        def h_cast(r: Tensor) -> Tensor:
            return h(r).to(r.dtype)

        return cls(name=name, f=f, h=h_cast, normalize=normalize)

    def weight(self, r: Tensor) -> Tensor:
        """``h(r)``, divided by its mean over the batch when :attr:`normalize` (``r``:
        ``(B,)``); the result carries no gradient."""
        r = r.detach()
        h = self.h(r)
        if self.normalize:
            h = h / h.mean().clamp_min(torch.finfo(h.dtype).tiny)
        return h


def second_derivative(f: Fn, r: Tensor) -> Tensor:
    """``f''(r)`` element-wise by automatic differentiation, in float64."""
    x = r.detach().to(torch.float64).requires_grad_(True)
    with torch.enable_grad():
        (first,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
        (second,) = torch.autograd.grad(first.sum(), x)
    return second


def _xlogx(r: Tensor) -> Tensor:
    return torch.special.xlogy(r, r)


DIVERGENCES: dict[str, Divergence] = {}


def register(div: Divergence) -> Divergence:
    """Make ``div`` available by name to :func:`divergence` (and to configs)."""
    if not div.name or not isinstance(div.name, str):
        raise ValueError(f"a divergence needs a non-empty name, got {div.name!r}")
    DIVERGENCES[div.name] = div
    return div


for _div in (
    Divergence("reverse_kl", lambda r: -torch.log(r), lambda r: torch.ones_like(r)),
    Divergence(
        "softened_rkl",
        lambda r: (r + 1) * torch.log((r + 1) / 2) - _xlogx(r) - torch.log(r),
        lambda r: 1 / (r + 1),
    ),
    Divergence("js", lambda r: _xlogx(r) - (r + 1) * torch.log((r + 1) / 2), lambda r: r / (r + 1)),
    Divergence(
        "squared_hellinger", lambda r: (torch.sqrt(r) - 1) ** 2, lambda r: torch.sqrt(r) / 2
    ),
    Divergence("forward_kl", _xlogx, lambda r: r, normalize=True),
    Divergence("jeffreys", lambda r: (r - 1) * torch.log(r), lambda r: r + 1, normalize=True),
):
    register(_div)


def divergence(name: str | Divergence) -> Divergence:
    """The divergence called ``name`` (a :class:`Divergence` is returned as it is).

    Raises:
        ValueError: an unknown name; the message lists the valid ones.
    """
    if isinstance(name, Divergence):
        return name
    if name not in DIVERGENCES:
        raise ValueError(
            f"unknown divergence {name!r}; expected one of {sorted(DIVERGENCES)} "
            "(or add one with Divergence.from_f and flowkit.distill.divergences.register)"
        )
    return DIVERGENCES[name]
