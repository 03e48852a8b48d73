"""The standard FID Inception-v3 (torch-fidelity's TF1-compatible port) from local weights only.

:func:`load_inception` builds torch-fidelity's ``FeatureExtractorInceptionV3`` (the network
behind torch-fidelity's and torchmetrics' FID, with the 2015-12-05 TensorFlow weights) asking
for its 2048-d pool features, and wraps it as a
:class:`~flowkit.evaluation.features.FeatureExtractor` for images ``(B, C, H, W)`` in
``[-1, 1]``: they are mapped to uint8 ``round((x + 1) * 127.5)``, 1-channel images repeated to
RGB, and torch-fidelity itself resizes them to 299x299 with its TensorFlow-1-compatible
bilinear resize and scales to ``(v - 128) / 128``, exactly as for the reference statistics.
(torchmetrics' ``NoTrainInceptionV3`` defaults to torch's antialiased resize instead, which
moves FID a little; this module keeps the reference one.)

The weights file (a ``.pth`` state dict, read by torch-fidelity with ``torch.load``) is looked
up, in this order:

1. the ``weights`` argument;
2. the environment variable ``FLOWKIT_INCEPTION_WEIGHTS``;
3. torch hub's checkpoint cache ``torch.hub.get_dir()/checkpoints/`` (``$TORCH_HOME/hub/
   checkpoints``) under the file names of :data:`WEIGHTS_FILES`: torch-fidelity's download
   name, then pytorch-fid's (the same converted TF weights, sha256 prefix ``6726825d``).

Nothing is downloaded.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch import Tensor, nn

from flowkit.evaluation.features import FeatureExtractor

__all__ = ["ENV_VAR", "WEIGHTS_FILES", "load_inception", "resolve_inception_weights"]

ENV_VAR = "FLOWKIT_INCEPTION_WEIGHTS"
WEIGHTS_FILES = {
    "weights-inception-2015-12-05-6726825d.pth": (
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth"
    ),
    "pt_inception-2015-12-05-6726825d.pth": (
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth"
    ),
}
FIDELITY_NAME = "inception-v3-compat"
NUM_FEATURES = 2048
INSTALL_HINT = (
    "install the metrics extra, pip install 'flowkit[metrics]', with a torchvision build "
    "that matches the installed torch"
)


def resolve_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """Find the FID Inception-v3 weights file (see the module docstring for the order).

    An explicit ``path`` or environment variable that names a missing file is an error (no
    silent fallback to the cache).

    Raises:
        FileNotFoundError: listing the places looked at and how to provide the file.
    """
    if path is not None:
        candidate = Path(path).expanduser()
        if not candidate.is_file():
            raise FileNotFoundError(f"Inception weights: weights={str(path)!r} is not a file")
        return candidate
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        candidate = Path(from_env).expanduser()
        if not candidate.is_file():
            raise FileNotFoundError(f"Inception weights: {ENV_VAR}={from_env!r} is not a file")
        return candidate
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    for filename in WEIGHTS_FILES:
        if (cache / filename).is_file():
            return cache / filename
    first, url = next(iter(WEIGHTS_FILES.items()))
    looked = ", ".join(str(cache / name) for name in WEIGHTS_FILES)
    raise FileNotFoundError(
        f"no FID Inception-v3 weights. Looked at: the weights argument (not given), ${ENV_VAR} "
        f"(not set), {looked}. Get torch-fidelity's {first} (from {url}; a .pth state dict) on "
        f"a machine with network access and provide it by one of: load_inception(weights=PATH) "
        f"or get_extractor('inception', weights=PATH); export {ENV_VAR}=PATH; or copy it to "
        f"{cache}/ (set TORCH_HOME to move that directory)."
    )


def _fidelity_inception_class() -> type[nn.Module]:
    """torch-fidelity's ``FeatureExtractorInceptionV3``, imported lazily.

    Raises:
        ImportError: torch-fidelity is missing or cannot be imported (its ``__init__`` imports
            torchvision, which fails when its build does not match torch's).
    """
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except Exception as error:  # a broken torchvision raises RuntimeError, not ImportError
        raise ImportError(
            f"the FID Inception-v3 needs torch-fidelity, which is missing or cannot be imported "
            f"beside torch {torch.__version__} ({type(error).__name__}: {error}); {INSTALL_HINT}"
        ) from error
    return FeatureExtractorInceptionV3


class FidelityInception(nn.Module):
    """torch-fidelity's Inception for images in ``[-1, 1]``: ``(B, 1|3, H, W) -> (B, 2048)``.

    Maps images to uint8 ``round((x.clamp(-1, 1) + 1) * 127.5)``, repeats one channel to RGB
    and returns the first (only requested) feature of the wrapped network's tuple.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] != 3:
            raise ValueError(
                f"inception extractor expects 1- or 3-channel images (B, C, H, W); got "
                f"{tuple(images.shape)}"
            )
        pixels = ((images.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
        return self.model(pixels)[0]


def load_inception(
    weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = True,
) -> FeatureExtractor:
    """The FID Inception-v3 as a frozen FeatureExtractor: ``(B, 1|3, H, W)`` in ``[-1, 1]``
    -> float32 ``(B, 2048)``.

    Args:
        weights: the ``.pth`` state dict; None looks it up (:func:`resolve_inception_weights`).
        device: where to put the network (None: CPU).
        autocast_dtype: None, ``torch.bfloat16`` or ``torch.float16`` (CUDA only; not for
            reported FIDs: the reference runs in float32).
        channels_last: on CUDA, run in channels-last memory format.

    Raises:
        ImportError: torch-fidelity (or the torchvision it imports) is unavailable.
        FileNotFoundError: no weights file was found.
        ValueError: the file is not a state dict of torch-fidelity's Inception-v3.
    """
    inception_class = _fidelity_inception_class()
    path = resolve_inception_weights(weights)
    try:
        model = inception_class(
            FIDELITY_NAME, [str(NUM_FEATURES)], feature_extractor_weights_path=str(path)
        )
    except (RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(
            f"{path} is not a state dict of torch-fidelity's FID Inception-v3 "
            f"(expected {next(iter(WEIGHTS_FILES))}): {error}"
        ) from error
    network = FidelityInception(model)
    if device is not None:
        network.to(device)
        if torch.device(device).type == "cuda" and channels_last:
            network.to(memory_format=torch.channels_last)
    return FeatureExtractor(
        network,
        "inception",
        NUM_FEATURES,
        input_shape=None,
        autocast_dtype=autocast_dtype,
        channels_last=channels_last,
    )
