"""GPU options shared by the trainer and the pipelines.

- attention: PyTorch's scaled-dot-product attention is what diffusers' attention blocks
  use by default; with ``xformers="auto"`` the xformers kernels replace it when the package
  is installed and the model is on CUDA (xformers has no CPU kernels);
- channels-last memory format for convolutional models on CUDA;
- ``torch.compile`` of the model (the returned module wraps the original, whose weights
  are the ones to save).

bf16 autocast is applied around the forward pass by the caller
(``torch.autocast(device_type, dtype=torch.bfloat16)``), not here.
"""

from __future__ import annotations

import importlib.util
import warnings

import torch
from torch import nn

XFORMERS_CHOICES = ("auto", "on", "off")


def accelerate(
    model: nn.Module,
    device: torch.device,
    *,
    xformers: str = "auto",
    channels_last: bool | None = None,
    compile: bool = False,
) -> nn.Module:
    """Apply the options above to ``model`` (already on ``device``) and return the module
    to call (the compiled wrapper when ``compile``).

    Args:
        xformers: ``"auto"`` (on CUDA when xformers is installed), ``"on"`` (error if it
            cannot be used) or ``"off"``.
        channels_last: ``None`` means on for CUDA models with 2-D convolutions.
    """
    if xformers not in XFORMERS_CHOICES:
        raise ValueError(f"xformers must be one of {list(XFORMERS_CHOICES)}, got {xformers!r}")
    on_cuda = device.type == "cuda"
    has_xformers = importlib.util.find_spec("xformers") is not None
    can_use = (
        on_cuda and has_xformers and hasattr(model, "enable_xformers_memory_efficient_attention")
    )
    if xformers == "on" and not can_use:
        raise ValueError(
            "xformers='on' needs CUDA, the xformers package (pip install 'flowkit[gpu]') and "
            f"a diffusers model; got device={device}, xformers installed={has_xformers}"
        )
    if xformers != "off" and can_use:
        try:
            model.enable_xformers_memory_efficient_attention()
        except Exception as error:  # a broken xformers build: keep SDPA
            if xformers == "on":
                raise
            warnings.warn(f"xformers unavailable ({error}); using PyTorch SDPA", stacklevel=2)
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if (on_cuda and has_conv) if channels_last is None else channels_last:
        model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile else model
