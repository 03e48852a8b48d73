"""A small CNN digit classifier whose pooled features serve as a FID-style embedding.

``DigitClassifier`` maps images ``(B, C, H, W)`` in ``[-1, 1]`` to logits ``(B, num_classes)``;
``features(x)`` gives the global-average-pooled activations of its last convolution stage
``(B, num_features)`` (as Inception's 2048-d pool features do for FID). Trained copies for
scikit-learn's digits (8x8) and MNIST-5k (28x28) ship in ``flowkit/evaluation/weights/``
(``scripts/train_feature_nets.py``); the classifier's configuration travels in the
safetensors metadata, so a file alone rebuilds its network (:func:`load_classifier`).

:func:`holdout_split` is the fixed train/test split those weights were trained and tested on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from flowkit.files import atomic_path

__all__ = ["DigitClassifier", "holdout_split", "load_classifier", "save_classifier"]

CONFIG_KEY = "flowkit_classifier_config"


def _stage_count(image_size: int) -> int:
    """1 + how many times ``image_size`` halves (floor) while staying >= 4: 8 -> 2, 28 -> 3."""
    stages, size = 1, image_size
    while size // 2 >= 4:
        stages, size = stages + 1, size // 2
    return stages


class DigitClassifier(nn.Module):
    """CNN: stages of two ``conv3x3-BN-ReLU``, 2x max-pooling between stages, then global
    average pooling (the features) and a linear classifier.

    Stage ``i`` has ``width * 2**i`` channels; the number of stages is 1 + how many times the
    image halves while staying at least 4 pixels (8x8: 2 stages, 4x4 at the end; 28x28: 3
    stages, 7x7 at the end), so ``num_features = width * 2**(stages - 1)``.

    Args:
        in_channels: image channels (1 for digits and MNIST).
        image_size: side of the square input images (8 for digits, 28 for MNIST).
        num_classes: number of logits.
        width: channels of the first stage.
        dropout: dropout on the features before the linear head (training only).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 8,
        num_classes: int = 10,
        width: int = 32,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("image_size", image_size, 4),
            ("num_classes", num_classes, 2),
            ("width", width, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"DigitClassifier: {name}={value!r}; expected an int >= {low}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"DigitClassifier: dropout={dropout!r}; expected 0 <= dropout < 1")
        self.config = {
            "in_channels": in_channels,
            "image_size": image_size,
            "num_classes": num_classes,
            "width": width,
            "dropout": dropout,
        }
        layers: list[nn.Module] = []
        channels = in_channels
        for stage in range(_stage_count(image_size)):
            if stage > 0:
                layers.append(nn.MaxPool2d(2))
            out = width * 2**stage
            for _ in range(2):
                layers += [
                    nn.Conv2d(channels, out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                ]
                channels = out
        self.body = nn.Sequential(*layers)
        self.num_features = channels
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one input image."""
        c, s = self.config["in_channels"], self.config["image_size"]
        return (c, s, s)

    def features(self, x: Tensor) -> Tensor:
        """Pooled last-stage activations ``(B, num_features)`` of images ``(B, C, H, W)``."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for images ``(B, C, H, W)`` in ``[-1, 1]``."""
        return self.head(self.dropout(self.features(x)))


def holdout_split(labels: Tensor, every: int = 5) -> tuple[Tensor, Tensor]:
    """Deterministic stratified split: within each class, every ``every``-th image is held out.

    The images of class ``k``, in data-set order, at positions ``every - 1, 2 every - 1, ...``
    go to the test split (20% for ``every=5``); no random numbers are involved, so the split
    is the same on every machine and torch version.

    Args:
        labels: int labels ``(N,)``.
        every: one test image per ``every`` images of each class (>= 2).

    Returns:
        ``(train_index, test_index)``: sorted int64 indices into ``labels``.
    """
    if every < 2:
        raise ValueError(f"holdout_split: every={every!r}; expected an int >= 2")
    if labels.dim() != 1:
        raise ValueError(f"holdout_split: labels must be 1-D (N,); got shape {tuple(labels.shape)}")
    is_test = torch.zeros(labels.shape[0], dtype=torch.bool)
    for k in labels.unique():
        members = (labels == k).nonzero().flatten()
        is_test[members[every - 1 :: every]] = True
    return (~is_test).nonzero().flatten(), is_test.nonzero().flatten()


def save_classifier(
    model: DigitClassifier,
    path: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write ``model``'s state dict (as ``dtype``) and configuration to a safetensors file.

    The file is written next to ``path`` and renamed into place (atomic on one file system).
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    info = dict(metadata or {}, **{CONFIG_KEY: json.dumps(model.config, sort_keys=True)})
    with atomic_path(path) as partial:
        save_file(state, str(partial), metadata=info)
        partial.chmod(0o644)


def load_classifier(path: str | os.PathLike) -> DigitClassifier:
    """Rebuild a :class:`DigitClassifier` (float32, eval mode, CPU) from a safetensors file.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file carries no classifier configuration or its tensors do not fit.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"classifier weights {str(path)!r} are not a file")
    with safe_open(str(path), framework="pt") as handle:
        config = (handle.metadata() or {}).get(CONFIG_KEY)
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    if config is None:
        raise ValueError(
            f"{path}: no {CONFIG_KEY!r} metadata; write the file with "
            "flowkit.evaluation.classifiers.save_classifier"
        )
    model = DigitClassifier(**json.loads(config))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path} does not fit DigitClassifier({config}): {error}") from error
    return model.eval()
