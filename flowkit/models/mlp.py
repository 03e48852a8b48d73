"""A residual MLP field for low-dimensional data (2-D toys, policies' actions)."""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from flowkit.models.field_utils import broadcast_time, check_path, check_prediction

__all__ = ["MLPField", "sinusoidal_embedding"]


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Transformer-style embedding of times ``t`` ``(B,)`` in ``[0, 1]`` -> ``(B, dim)``.

    ``s = 1000 t`` and ``emb = [cos(s w_k), sin(s w_k)]`` with ``w_k = max_period^(-k / half)``,
    ``k = 0..half-1``, ``half = dim // 2`` (a zero column pads odd ``dim``). The factor 1000
    spreads ``[0, 1]`` over the frequency range that the embedding resolves.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = 1000.0 * t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return nn.functional.pad(emb, (0, dim % 2))


class _ResidualBlock(nn.Module):
    """``h + W2 silu(W1 (LN(h) (1 + scale) + shift))`` with ``(scale, shift)`` from the
    conditioning embedding (FiLM)."""

    def __init__(self, hidden_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim, elementwise_affine=False)
        self.film = nn.Linear(hidden_dim, 2 * hidden_dim)
        self.fc1 = nn.Linear(hidden_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.film(emb).chunk(2, dim=1)
        y = self.norm(h) * (1 + scale) + shift
        return h + self.fc2(nn.functional.silu(self.fc1(y)))


class MLPField(ModelMixin, ConfigMixin):
    """Field ``(x, t, class_labels) -> (B, dim)`` made of FiLM-conditioned residual blocks.

    ``emb = MLP(sinusoidal(t)) [+ E[class]]``; ``h = W_in x``; ``num_layers`` residual
    blocks each modulated by ``silu(emb)``; output ``W_out silu(LN(h))``.

    Args:
        dim: data dimension.
        hidden_dim: width of the residual stream and of the conditioning embedding.
        num_layers: number of residual blocks (>= 1).
        time_embed_dim: size of the sinusoidal time features.
        num_classes: enables class conditioning with ``num_classes + 1`` embeddings; the
            last index (``num_classes``) is the null class, used when ``class_labels`` is
            None (classifier-free guidance).
        prediction: what the output means: "velocity", "epsilon", "data" or
            "score" ("x0": a deprecated alias of "data").
        path, path_kwargs: the path the field was trained on (a name of
            :data:`flowkit.paths.PATHS`, or ``"gbm"`` for a multiplicative model) and its
            parameters; saved in the config so that a saved model describes itself.
    """

    @register_to_config
    def __init__(
        self,
        dim: int,
        hidden_dim: int = 256,
        num_layers: int = 4,
        time_embed_dim: int = 64,
        num_classes: int | None = None,
        prediction: str = "velocity",
        path: str = "rectified",
        path_kwargs: dict | None = None,
    ):
        super().__init__()
        canonical = check_prediction(prediction)
        if canonical != prediction:  # a deprecated alias ("x0") is saved as its new name
            self.register_to_config(prediction=canonical)
        check_path(path, path_kwargs)
        for name, value in (("dim", dim), ("hidden_dim", hidden_dim), ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if time_embed_dim < 2:
            raise ValueError(f"time_embed_dim must be >= 2, got {time_embed_dim}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
        self.time_mlp = nn.Sequential(
            nn.Linear(time_embed_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim)
        )
        self.class_embedding = (
            nn.Embedding(num_classes + 1, hidden_dim) if num_classes is not None else None
        )
        self.input = nn.Linear(dim, hidden_dim)
        self.blocks = nn.ModuleList(_ResidualBlock(hidden_dim) for _ in range(num_layers))
        self.output = nn.Sequential(nn.LayerNorm(hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, dim))

    @property
    def prediction(self) -> str:
        """What the output means: "velocity", "epsilon", "data" or "score"."""
        return self.config.prediction

    @property
    def num_classes(self) -> int | None:
        """Number of real classes (the null class excluded), or None if unconditional."""
        return self.config.num_classes

    def forward(self, x: Tensor, t: Tensor | float, class_labels: Tensor | None = None) -> Tensor:
        """Evaluate the field.

        Args:
            x: ``(B, dim)``.
            t: ``(B,)``, a 0-d tensor or a number, in ``[0, 1]``.
            class_labels: int64 ``(B,)`` in ``0..num_classes`` (``num_classes`` = null), or
                None for the null class; only with ``num_classes``.

        Returns:
            ``(B, dim)``.
        """
        dim = self.config.dim
        if x.ndim != 2 or x.shape[1] != dim:
            raise ValueError(f"x must have shape (B, {dim}), got {tuple(x.shape)}")
        t = broadcast_time(t, x)
        emb = self.time_mlp(sinusoidal_embedding(t, self.config.time_embed_dim).to(x.dtype))
        if self.class_embedding is not None:
            emb = emb + self.class_embedding(self._labels(class_labels, x))
        elif class_labels is not None:
            raise ValueError("class_labels given, but the model has num_classes=None")
        emb = nn.functional.silu(emb)
        h = self.input(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.output(h)

    def _labels(self, class_labels: Tensor | None, x: Tensor) -> Tensor:
        num_classes = self.config.num_classes
        if class_labels is None:
            return torch.full((x.shape[0],), num_classes, device=x.device, dtype=torch.long)
        if class_labels.shape != (x.shape[0],) or class_labels.is_floating_point():
            raise ValueError(
                f"class_labels must be an integer tensor of shape ({x.shape[0]},), got "
                f"{class_labels.dtype} {tuple(class_labels.shape)}"
            )
        if class_labels.numel():
            low, high = int(class_labels.min()), int(class_labels.max())
            if low < 0 or high > num_classes:
                raise ValueError(
                    f"class_labels must lie in 0..{num_classes} ({num_classes} = null class), "
                    f"got values in {low}..{high}"
                )
        return class_labels.long()
