"""The three networks of f-distill: the one-step generator, the fake score network and the
discriminator head on the fake network's internal features.

Generator. A flowkit field (``MLPField`` / ``UNetField``) on the rectified path, read as
:class:`~flowkit.pipelines.OneStepPipeline` reads it: ``G(z) = z + v(z, 0)`` for a
``"velocity"`` prediction, ``G(z) = net(z, 0)`` for ``"data"`` (:func:`generate`), with unit
noise ``z``. :func:`make_generator` copies the teacher's architecture and weights:

- a teacher on the rectified path with a velocity (or data) prediction (a 1-RF or 2-RF run, a
  flow-matching teacher) keeps its prediction, so ``G`` starts as the teacher's data
  prediction at the noise end, ``G(z) = x1_hat(z, t=0)`` (its 1-step Euler sample), exactly;
- any other teacher (VP / VE diffusion, a DDPM diffusers ``UNet2DModel``) gives a generator
  with the teacher's weights whose output is read as a data prediction at ``t = 0``: the
  conversion from epsilon at the noise end (``x1 = (x_t - sigma eps) / alpha`` with
  ``alpha(0)`` near 0) cannot be written into a saved ``MLPField`` / ``UNetField``, so such a
  generator starts from the teacher's weights but not from its function.

Fake score network. A copy of the teacher (same path, prediction and weights), trained by the
teacher's own regression (its prediction on its path) on generator samples.

Discriminator. :class:`FeatureHook` records the output of one module of the fake network
(the last hidden block of an MLP, the UNet's mid-block) during the fake network's own
forward pass; :class:`DiscriminatorHead` maps those features to one logit per sample. No
second copy of the network is made, and one fake forward gives both the prediction and the
logit.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from flowkit.models import MLPField, UNetField

__all__ = [
    "DiscriminatorHead",
    "FeatureHook",
    "feature_module",
    "generate",
    "make_fake",
    "make_generator",
]

_GENERATOR_PREDICTIONS = ("velocity", "data")


def make_generator(teacher: nn.Module, path_name: str) -> nn.Module:
    """A trainable one-step generator from the teacher's network (module docstring).

    Args:
        teacher: the loaded teacher field (``LoadedModel.field``): an ``MLPField``, a
            ``UNetField`` or a diffusers teacher whose ``.model`` is a ``UNet2DModel``.
        path_name: the name of the teacher's path (``LoadedModel.path.name``).

    Raises:
        ValueError: a teacher network no generator can be made from.
    """
    prediction = getattr(teacher, "prediction", "velocity")
    keep = path_name == "rectified" and prediction in _GENERATOR_PREDICTIONS
    target = prediction if keep else "data"
    if isinstance(teacher, (MLPField, UNetField)):
        config = {k: v for k, v in teacher.config.items() if not k.startswith("_")}
        config.update(prediction=target, path="rectified", path_kwargs=None)
        generator = type(teacher).from_config(config)
        generator.load_state_dict(teacher.state_dict())
        return generator.train().requires_grad_(True)
    inner = getattr(teacher, "model", None)
    if inner is not None and type(inner).__name__ == "UNet2DModel":
        return _generator_from_unet(inner, target)
    raise ValueError(
        f"cannot make a one-step generator from a {type(teacher).__name__} teacher: f-distill "
        "needs an MLPField, a UNetField or a diffusers UNet2DModel teacher"
    )


def _generator_from_unet(unet: nn.Module, prediction: str) -> UNetField:
    from flowkit.models.unet import _UNET_KEYS

    config = {k: v for k, v in unet.config.items() if k in _UNET_KEYS}
    channels = config["in_channels"]
    config["out_channels"] = channels  # a learned-variance UNet keeps its mean channels
    generator = UNetField(**config, prediction=prediction, path="rectified")
    state = dict(unet.state_dict())
    for key in ("conv_out.weight", "conv_out.bias"):
        state[key] = state[key][:channels]
    generator.unet.load_state_dict(state)
    return generator.train().requires_grad_(True)


def generate(generator: nn.Module, z: Tensor) -> Tensor:
    """``G(z)``, ``(B, *D)`` from unit noise ``z`` ``(B, *D)``: ``z + v(z, 0)`` or the data
    prediction ``net(z, 0)``, as :class:`~flowkit.pipelines.OneStepPipeline` computes it."""
    out = generator(z, z.new_zeros(z.shape[0]))
    return z + out if generator.prediction == "velocity" else out


def make_fake(teacher: nn.Module) -> nn.Module:
    """The fake score network: a trainable copy of the teacher (weights, path, prediction)."""
    fake = copy.deepcopy(teacher).train().requires_grad_(True)
    return fake


def feature_module(network: nn.Module, name: str | None = None) -> nn.Module:
    """The module whose output the discriminator reads: ``name`` (a dotted submodule path)
    or, by default, an MLP field's last residual block or a UNet's mid-block.

    Raises:
        ValueError: ``name`` is not a submodule, or no default exists for this network.
    """
    modules = dict(network.named_modules())
    if name:
        if name not in modules:
            close = [n for n in modules if n.endswith(name.split(".")[-1])][:5]
            raise ValueError(
                f"distill.feature_module={name!r} is not a submodule of "
                f"{type(network).__name__}; e.g. {close or list(modules)[1:6]}"
            )
        return modules[name]
    if isinstance(network, MLPField):
        return network.blocks[-1]
    for candidate in ("unet.mid_block", "model.mid_block"):
        if modules.get(candidate) is not None:
            return modules[candidate]
    raise ValueError(
        f"no default feature module for a {type(network).__name__}: set distill.feature_module "
        "to the dotted name of one of its submodules"
    )


class FeatureHook:
    """Records the output of ``module`` at each forward pass (a forward hook): after
    ``fake(x_t, t)``, :attr:`features` holds that pass's ``(B, C)`` or ``(B, C, H, W)``
    features, still in the autograd graph."""

    def __init__(self, module: nn.Module) -> None:
        self.features: Tensor | None = None
        self._handle = module.register_forward_hook(self._record)

    def _record(self, module: nn.Module, inputs: tuple, output) -> None:
        self.features = output[0] if isinstance(output, tuple) else output

    def take(self) -> Tensor:
        """The recorded features (then forgotten, so a stale pass is never read twice)."""
        if self.features is None:
            raise RuntimeError("no features recorded: run the fake network first")
        features, self.features = self.features, None
        return features

    def remove(self) -> None:
        self._handle.remove()


class DiscriminatorHead(nn.Module):
    """``logit = W2 silu(W1 pool(silu(features)))``: ``(B, C)`` or ``(B, C, H, W)`` features
    (spatially averaged) to ``(B,)`` logits estimating ``log p_t / q_t``."""

    def __init__(self, channels: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(channels, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, features: Tensor) -> Tensor:
        h = nn.functional.silu(features)
        if h.ndim > 2:
            h = h.flatten(2).mean(2)
        return self.net(h).squeeze(1)

    @staticmethod
    def channels_of(features: Tensor) -> int:
        """The feature width the head must take."""
        return int(features.shape[1])


@torch.no_grad()
def probe_channels(fake: nn.Module, hook: FeatureHook, shape: tuple[int, ...]) -> int:
    """The hooked module's channel count, from one forward pass on two zero samples."""
    device = next(fake.parameters()).device
    x = torch.zeros((2, *shape), device=device)
    fake(x, torch.full((2,), 0.5, device=device))
    return DiscriminatorHead.channels_of(hook.take())
