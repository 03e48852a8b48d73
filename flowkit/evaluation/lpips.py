"""LPIPS (Zhang et al. 2018) from local weights only: nothing is downloaded.

The ``lpips`` package ships its small linear heads (``lpips/weights/v0.1/{net}.pth``) but
takes the backbone (VGG16, AlexNet or SqueezeNet 1.1 features) from torchvision's
downloader. :func:`load_lpips` builds ``lpips.LPIPS(pnet_rand=True)`` (random backbone, no
download) and copies in a torchvision-format backbone state dict found, in this order:

1. the ``backbone_weights`` argument;
2. the environment variable ``FLOWKIT_LPIPS_BACKBONE``;
3. torch hub's checkpoint cache, ``torch.hub.get_dir()/checkpoints/<file>``
   (``$TORCH_HOME/hub/checkpoints``), with torchvision's file names (:data:`BACKBONE_FILES`).

Files are read with ``torch.load(weights_only=True)`` (or safetensors for
``.safetensors``), never by unpickling arbitrary objects.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

ENV_VAR = "FLOWKIT_LPIPS_BACKBONE"
BACKBONE_FILES = {
    "vgg": "vgg16-397923af.pth",
    "alex": "alexnet-owt-7be5be79.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
BACKBONE_URL = "https://download.pytorch.org/models/"
INSTALL_HINT = (
    "install the metrics extra, pip install 'flowkit[metrics]', with a torchvision build "
    "that matches the installed torch"
)


def _check_net(net: str) -> None:
    if net not in BACKBONE_FILES:
        raise ValueError(f"unknown LPIPS net {net!r}; expected one of {sorted(BACKBONE_FILES)}")


def resolve_backbone_weights(net: str, path: str | os.PathLike | None = None) -> Path:
    """Find the torchvision backbone state-dict file for LPIPS ``net``.

    Looks at ``path``, then ``$FLOWKIT_LPIPS_BACKBONE``, then the torch hub checkpoint
    cache. An explicit ``path`` or environment variable that names a missing file is an
    error (no silent fallback).

    Raises:
        FileNotFoundError: listing the places looked at and how to provide the file.
    """
    _check_net(net)
    if path is not None:
        candidate = Path(path).expanduser()
        if not candidate.is_file():
            raise FileNotFoundError(
                f"LPIPS backbone weights: backbone_weights={str(path)!r} is not a file"
            )
        return candidate
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        candidate = Path(from_env).expanduser()
        if not candidate.is_file():
            raise FileNotFoundError(f"LPIPS backbone weights: {ENV_VAR}={from_env!r} is not a file")
        return candidate
    filename = BACKBONE_FILES[net]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return cached
    raise FileNotFoundError(
        f"no backbone weights for LPIPS net {net!r}. Looked at: the backbone_weights "
        f"argument (not given), ${ENV_VAR} (not set), {cached}. Provide torchvision's "
        f"{filename} (from {BACKBONE_URL}{filename}; .pth or .safetensors state dict) by "
        f"one of: load_lpips({net!r}, backbone_weights=PATH); export {ENV_VAR}=PATH; or "
        f"copy it to {cached.parent}/ (set TORCH_HOME to move that directory)."
    )


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a state-dict file, without unpickling arbitrary objects."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_backbone(backbone: nn.Module, state: dict[str, Tensor], source: str = "") -> None:
    """Copy torchvision ``features.<i>.*`` weights into lpips' sliced backbone.

    ``lpips.pretrained_networks`` splits torchvision's ``features`` sequential into
    ``slice1 ... sliceK`` that keep the layer indices as child names, so the key
    ``features.<i>.<rest>`` becomes ``slice<k>.<i>.<rest>`` for the slice holding layer
    ``i``. The classifier's weights are ignored; every backbone parameter must be filled.
    """
    slice_of = {
        index: slice_name
        for slice_name, block in backbone.named_children()
        for index, _ in block.named_children()
    }
    mapped = {}
    for key, value in state.items():
        if not key.startswith("features."):
            continue
        index, rest = key.removeprefix("features.").split(".", 1)
        if index not in slice_of:
            raise ValueError(
                f"{source}: layer features.{index} has no place in the backbone; "
                "is this the state dict of the right network?"
            )
        mapped[f"{slice_of[index]}.{index}.{rest}"] = value
    if not mapped:
        raise ValueError(
            f"{source}: no 'features.*' tensors; expected a torchvision "
            "state dict (e.g. vgg16-397923af.pth)"
        )
    try:
        backbone.load_state_dict(mapped, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{source} does not fit the LPIPS backbone: {error}") from error


class LPIPSDistance(nn.Module):
    """Frozen LPIPS: ``(a, b) -> (B,)`` for image batches ``(B, C, H, W)`` in ``[-1, 1]``.

    One-channel images are repeated to RGB. It always stays in eval mode (``train()`` is a
    no-op) because LPIPS' linear heads hold dropout layers; gradients flow to the inputs.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPSDistance:
        return super().train(False)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        return self.model(a, b).reshape(a.shape[0])


def load_lpips(
    net: str = "vgg",
    backbone_weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
) -> LPIPSDistance:
    """Build a frozen LPIPS distance from local weights (see the module docstring).

    Args:
        net: ``"vgg"`` (the LPIPS-VGG of 2-RF++ and rectified-flow distillation),
            ``"alex"`` or ``"squeeze"``.
        backbone_weights: a torchvision state-dict file (``.pth`` or ``.safetensors``) of
            the backbone; None looks it up (:func:`resolve_backbone_weights`).
        device: where to put the module.

    Raises:
        ImportError: torchvision is missing or broken beside this torch, or lpips is missing.
        FileNotFoundError: no backbone weights file was found.
    """
    _check_net(net)
    try:
        import torchvision  # noqa: F401  (lpips imports it; fail here with a clear message)
    except Exception as error:
        raise ImportError(
            f"LPIPS needs torchvision, which is unavailable or broken beside torch "
            f"{torch.__version__} ({type(error).__name__}: {error}); {INSTALL_HINT}"
        ) from error
    try:
        import lpips
    except ImportError as error:
        raise ImportError(f"LPIPS needs the lpips package ({error}); {INSTALL_HINT}") from error
    path = resolve_backbone_weights(net, backbone_weights)
    model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    load_backbone(model.net, _read_state_dict(path), source=str(path))
    return LPIPSDistance(model).to(device)
