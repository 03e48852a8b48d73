"""The networks of a flow policy: the state-conditioned velocity, the noise net, the value.

All take observations that are already normalised (see :mod:`flowkit.rl.normalizer`) and
act on actions in the policy's own box ``[-1, 1]^A`` (see :class:`flowkit.rl.policy.
ActionBounds`). Conditioning is by concatenation: the input of each net is
``[a (A), s (S), sinusoidal(t) (E)]`` (the noise net and the value net drop what they do
not read), followed by a residual MLP

    h = W_in x ;  h = h + W2 silu(W1 LN(h))   (num_layers times) ;  out = W_out silu(LN(h)).

ReinFlow's policy is such a residual MLP (3 x 512 on MuJoCo); its noise net reads the time
and the state, not the current action (Zhang et al. 2025).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowkit.models.mlp import sinusoidal_embedding

__all__ = ["ResidualMLP", "VelocityNet", "NoiseNet", "ValueNet"]


class _Block(nn.Module):
    """``h + W2 silu(W1 LN(h))``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.fc2(nn.functional.silu(self.fc1(self.norm(h))))


class ResidualMLP(nn.Module):
    """``(B, in_dim) -> (B, out_dim)``: input layer, ``num_layers`` residual blocks, output.

    ``zero_output`` starts the output layer at zero (a noise net then starts in the middle
    of its bounds, a value net at 0)."""

    def __init__(
        self, in_dim: int, out_dim: int, hidden_dim: int, num_layers: int, zero_output: bool = False
    ) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden_dim", hidden_dim)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.input = nn.Linear(in_dim, hidden_dim)
        self.blocks = nn.Sequential(*(_Block(hidden_dim) for _ in range(num_layers)))
        self.output = nn.Sequential(
            nn.LayerNorm(hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, out_dim)
        )
        if zero_output:
            nn.init.zeros_(self.output[-1].weight)
            nn.init.zeros_(self.output[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.blocks(self.input(x)))


def _check_time(t: Tensor, batch: int) -> Tensor:
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")
    return t


class VelocityNet(nn.Module):
    """The state-conditioned velocity ``v(a, t, s)``: ``(B, A), (B,), (B, S) -> (B, A)``."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dim: int = 256,
        num_layers: int = 3,
        time_embed_dim: int = 16,
    ) -> None:
        super().__init__()
        self.obs_dim, self.action_dim, self.time_embed_dim = obs_dim, action_dim, time_embed_dim
        self.net = ResidualMLP(action_dim + obs_dim + time_embed_dim, action_dim, hidden_dim,
                               num_layers)  # fmt: skip

    def forward(self, a: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        t = _check_time(t, a.shape[0])
        emb = sinusoidal_embedding(t, self.time_embed_dim).to(a.dtype)
        return self.net(torch.cat([a, obs, emb], dim=1))


class NoiseNet(nn.Module):
    """The unbounded noise head ``h(t, s)``: ``(B,), (B, S) -> (B, A)``; the policy maps it
    into ``[sigma_min, sigma_max]`` (:func:`flowkit.rl.policy.bounded_sigma`). Its output
    layer starts at zero, so a fresh noise net sits at the geometric middle of the bounds."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dim: int = 128,
        num_layers: int = 2,
        time_embed_dim: int = 16,
    ) -> None:
        super().__init__()
        self.time_embed_dim = time_embed_dim
        self.net = ResidualMLP(obs_dim + time_embed_dim, action_dim, hidden_dim, num_layers,
                               zero_output=True)  # fmt: skip

    def forward(self, t: Tensor, obs: Tensor) -> Tensor:
        t = _check_time(t, obs.shape[0])
        emb = sinusoidal_embedding(t, self.time_embed_dim).to(obs.dtype)
        return self.net(torch.cat([obs, emb], dim=1))


class ValueNet(nn.Module):
    """The critic ``V(s)``: ``(B, S) -> (B,)``."""

    def __init__(self, obs_dim: int, hidden_dim: int = 256, num_layers: int = 3) -> None:
        super().__init__()
        self.net = ResidualMLP(obs_dim, 1, hidden_dim, num_layers, zero_output=True)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)
