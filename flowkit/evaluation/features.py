"""Frozen feature extractors for Fréchet-distance metrics: a name or a module -> FeatureExtractor.

A :class:`FeatureExtractor` maps images ``(B, C, H, W)`` in ``[-1, 1]`` to float32 features
``(B, num_features)``; it has a ``.name`` and an int ``.num_features`` (so torchmetrics'
``FrechetInceptionDistance(feature=extractor)`` takes it as is). :func:`get_extractor` builds

- ``"digits"``: :class:`~flowkit.evaluation.classifiers.DigitClassifier` trained on
  scikit-learn's digits, images ``(B, 1, 8, 8)``, 64 features;
- ``"mnist"``: the same network trained on MNIST-5k, images ``(B, 1, 28, 28)``, 64 features;
- ``"inception"``: the standard FID Inception-v3 (torch-fidelity; local weights, see
  :mod:`flowkit.evaluation.inception`), any size, 1 or 3 channels, 2048 features;
- any ``nn.Module`` mapping images to ``(B, D)`` (wrapped, frozen).

The digit networks' weights ship in ``flowkit/evaluation/weights/`` (trained by
``scripts/train_feature_nets.py``; held-out accuracies in ``weights/accuracy.json``).

On CUDA, ``autocast_dtype=torch.bfloat16`` or ``torch.float16`` runs the network under
autocast (features still come back float32) and ``channels_last=True`` (the default) puts
the weights and inputs in channels-last memory format. Reported FIDs should use the default
float32 path: autocast changes the features slightly.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from flowkit.evaluation.classifiers import load_classifier

__all__ = [
    "EXTRACTOR_NAMES",
    "WEIGHTS_DIR",
    "FeatureExtractor",
    "get_extractor",
    "shipped_weights",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED = {"digits": (1, 8, 8), "mnist": (1, 28, 28)}
EXTRACTOR_NAMES = ("digits", "inception", "mnist")
AUTOCAST_DTYPES = (None, torch.bfloat16, torch.float16)
_COMMON_OPTIONS = {"autocast_dtype", "channels_last"}
_OPTIONS = {
    "digits": _COMMON_OPTIONS | {"weights"},
    "mnist": _COMMON_OPTIONS | {"weights"},
    "inception": _COMMON_OPTIONS | {"weights"},
    "module": _COMMON_OPTIONS | {"name", "num_features", "input_shape"},
}


class FeatureExtractor(nn.Module):
    """Frozen ``network``: images ``(B, C, H, W)`` in ``[-1, 1]`` -> float32 ``(B, num_features)``.

    The network is put in eval mode with ``requires_grad=False`` and stays in eval mode
    (``train()`` is a no-op); gradients still flow to the images. Inputs are moved to the
    network's device and cast to float32.

    Args:
        network: maps images to ``(B, num_features)`` (or ``(B, num_features, 1, 1)``).
        name: what the features are called in reports (e.g. ``"digits"``).
        num_features: feature dimension D.
        input_shape: ``(C, H, W)`` the network needs, or None for any shape.
        autocast_dtype: None, ``torch.bfloat16`` or ``torch.float16`` (CUDA only).
        channels_last: on CUDA, run in channels-last memory format.
    """

    def __init__(
        self,
        network: nn.Module,
        name: str,
        num_features: int,
        input_shape: tuple[int, int, int] | None = None,
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(num_features, int) or isinstance(num_features, bool) or num_features < 1:
            raise ValueError(f"{name}: num_features={num_features!r}; expected an int >= 1")
        if autocast_dtype not in AUTOCAST_DTYPES:
            raise ValueError(
                f"{name}: autocast_dtype={autocast_dtype!r}; expected None, torch.bfloat16 "
                "or torch.float16"
            )
        if input_shape is not None:
            input_shape = tuple(int(s) for s in input_shape)
            if len(input_shape) != 3:
                raise ValueError(f"{name}: input_shape={input_shape!r}; expected (C, H, W)")
        self.network = network.eval().requires_grad_(False)
        self.name = name
        self.num_features = num_features
        self.input_shape = input_shape
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        self._check_autocast_device(self.device)

    @property
    def device(self) -> torch.device:
        """Device of the network's first parameter or buffer (CPU if it has none)."""
        tensor = next(itertools.chain(self.network.parameters(), self.network.buffers()), None)
        return torch.device("cpu") if tensor is None else tensor.device

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(False)

    def _check_autocast_device(self, device: torch.device) -> None:
        if self.autocast_dtype is not None and device.type != "cuda":
            raise ValueError(
                f"{self.name}: autocast_dtype={self.autocast_dtype} runs only on CUDA, but the "
                f"extractor is on {device}; use autocast_dtype=None on {device.type}"
            )

    def _expected(self) -> str:
        if self.input_shape is None:
            return "(B, C, H, W)"
        return "(B, {}, {}, {})".format(*self.input_shape)

    def forward(self, images: Tensor) -> Tensor:
        """Features ``(B, num_features)`` float32 of images ``(B, C, H, W)`` in ``[-1, 1]``."""
        shape = tuple(images.shape)
        if images.dim() != 4 or (self.input_shape is not None and shape[1:] != self.input_shape):
            raise ValueError(
                f"{self.name} extractor expects images of shape {self._expected()} in [-1, 1]; "
                f"got {shape}. Resize or convert the images, or pick an extractor made for "
                f"this size (digits: 1x8x8, mnist: 1x28x28, inception: any size)"
            )
        device = self.device
        self._check_autocast_device(device)
        images = images.to(device=device, dtype=torch.float32)
        cuda = device.type == "cuda"
        if cuda and self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast("cuda", dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            features = self.network(images)
        features = features.reshape(shape[0], -1).float()
        if features.shape[1] != self.num_features:
            raise ValueError(
                f"{self.name}: the network returned {features.shape[1]} features per image; "
                f"num_features={self.num_features}"
            )
        return features

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, num_features={self.num_features}, "
            f"input_shape={self.input_shape}, autocast_dtype={self.autocast_dtype}"
        )


class _ClassifierFeatures(nn.Module):
    """``classifier.features`` as a module's forward."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier.features(images)


def shipped_weights(name: str) -> Path:
    """Path of the shipped weights of ``"digits"`` or ``"mnist"``.

    Raises:
        ValueError: ``name`` has no shipped weights.
        FileNotFoundError: the file is missing from this installation.
    """
    if name not in SHIPPED:
        raise ValueError(f"no shipped weights named {name!r}; expected one of {sorted(SHIPPED)}")
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped {name!r} feature weights are missing: {path}. The installation lacks "
            "flowkit/evaluation/weights/*.safetensors (package data); reinstall flowkit, or "
            "regenerate them from a source checkout with python scripts/train_feature_nets.py"
        )
    return path


def _check_options(kind: str, options: dict) -> None:
    unknown = sorted(set(options) - _OPTIONS[kind])
    if unknown:
        raise TypeError(
            f"get_extractor({kind!r}): unknown options {unknown}; "
            f"accepted: {sorted(_OPTIONS[kind])}"
        )


def _place(network: nn.Module, device: torch.device | str | None, channels_last: bool) -> None:
    if device is not None:
        network.to(device)
        if torch.device(device).type == "cuda" and channels_last:
            network.to(memory_format=torch.channels_last)


def _probe_num_features(network: nn.Module, input_shape: tuple[int, ...], name: str) -> int:
    parameter = next(itertools.chain(network.parameters(), network.buffers()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    probe = torch.zeros(2, *input_shape, device=device)
    with torch.no_grad():
        out = network.eval()(probe)
    if not isinstance(out, Tensor) or out.shape[0] != 2:
        raise ValueError(
            f"{name}: a probe batch of shape {tuple(probe.shape)} gave "
            f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}; expected (2, D) features"
        )
    return int(out[0].numel())


def _wrap_module(
    module: nn.Module,
    device: torch.device | str | None,
    name: str | None = None,
    num_features: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = True,
) -> FeatureExtractor:
    name = name or type(module).__name__
    _place(module, device, channels_last)
    if num_features is None:
        declared = getattr(module, "num_features", None)
        if isinstance(declared, int) and not isinstance(declared, bool):
            num_features = declared
        elif input_shape is not None:
            num_features = _probe_num_features(module, input_shape, name)
        else:
            raise ValueError(
                f"{name}: cannot tell the feature dimension; pass num_features=D, or "
                "input_shape=(C, H, W) to probe the module with a zero batch"
            )
    return FeatureExtractor(module, name, num_features, input_shape, autocast_dtype, channels_last)


def get_extractor(
    name_or_module: str | nn.Module,
    device: torch.device | str | None = None,
    **options,
) -> FeatureExtractor:
    """A frozen :class:`FeatureExtractor` by name, or wrapping a module.

    Args:
        name_or_module: ``"digits"``, ``"mnist"``, ``"inception"``, an ``nn.Module`` mapping
            images ``(B, C, H, W)`` in ``[-1, 1]`` to ``(B, D)``, or a FeatureExtractor
            (returned as is, moved to ``device``).
        device: where to put the network (None: CPU for named extractors; a module stays).
        **options: ``autocast_dtype`` (None, ``torch.bfloat16``, ``torch.float16``; CUDA
            only) and ``channels_last`` (bool, CUDA only; default True) for all;
            ``weights`` (a path) for the named ones, overriding the shipped digit weights or
            locating Inception's (:func:`~flowkit.evaluation.inception.resolve_inception_weights`);
            ``name``, ``num_features`` and ``input_shape`` ``(C, H, W)`` for modules
            (``num_features`` defaults to the module's int ``num_features`` attribute, else
            to the width of a probe forward of zeros shaped ``input_shape``).

    Raises:
        ValueError: unknown name (the message lists the valid ones) or bad option values.
        TypeError: options that the extractor does not take, or a wrong ``name_or_module`` type.
    """
    if isinstance(name_or_module, FeatureExtractor):
        if options:
            raise TypeError(
                f"get_extractor: {name_or_module.name!r} is already a FeatureExtractor; "
                f"options {sorted(options)} cannot be applied to it"
            )
        return name_or_module.to(device) if device is not None else name_or_module
    if isinstance(name_or_module, nn.Module):
        _check_options("module", options)
        return _wrap_module(name_or_module, device, **options)
    if not isinstance(name_or_module, str):
        raise TypeError(
            f"get_extractor: expected a name {list(EXTRACTOR_NAMES)} or an nn.Module; "
            f"got {type(name_or_module).__name__}"
        )
    name = name_or_module
    if name not in EXTRACTOR_NAMES:
        raise ValueError(
            f"unknown feature extractor {name!r}; expected one of {list(EXTRACTOR_NAMES)} "
            "or an nn.Module"
        )
    _check_options(name, options)
    if name == "inception":
        from flowkit.evaluation.inception import load_inception

        return load_inception(device=device, **options)
    weights: str | os.PathLike | None = options.pop("weights", None)
    classifier = load_classifier(shipped_weights(name) if weights is None else weights)
    if classifier.input_shape != SHIPPED[name]:
        raise ValueError(
            f"{name}: weights {weights} are for images {classifier.input_shape}; "
            f"the {name!r} extractor takes {SHIPPED[name]}"
        )
    channels_last = options.get("channels_last", True)
    network = _ClassifierFeatures(classifier)
    _place(network, device, channels_last)
    return FeatureExtractor(
        network,
        name,
        classifier.num_features,
        SHIPPED[name],
        options.get("autocast_dtype"),
        channels_last,
    )
