"""Optimizer state as safetensors (tensors) plus JSON (everything else) — no pickle."""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import Tensor


def flatten_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], str]:
    """Split ``optimizer.state_dict()`` into ``{"state.<param>.<name>": tensor}`` and a JSON
    string holding the param groups and any non-tensor per-parameter values."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for param_id, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            key = f"state.{param_id}.{name}"
            if isinstance(value, Tensor):
                tensors[key] = value.detach().contiguous().cpu()
            else:
                scalars[key] = value
    meta = {"param_groups": state_dict["param_groups"], "scalars": scalars}
    return tensors, json.dumps(meta)


def unflatten_optimizer_state(tensors: dict[str, Tensor], meta_json: str) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`."""
    meta = json.loads(meta_json)
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        _, param_id, name = key.split(".", 2)
        state.setdefault(int(param_id), {})[name] = value
    for group in meta["param_groups"]:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": meta["param_groups"]}


def optimizer_state_to_device(optimizer: torch.optim.Optimizer) -> None:
    """Move loaded state tensors next to their parameters (step counters stay on CPU)."""
    for param, param_state in optimizer.state.items():
        for name, value in param_state.items():
            if isinstance(value, Tensor) and name != "step":
                param_state[name] = value.to(param.device)
