"""A saved policy: ``DIR/policy.safetensors`` (a flow policy's velocity and noise nets, or a
Gaussian policy's mean net and log-std; the observation normaliser's statistics under
``normalizer.``) and ``DIR/policy.json`` (the kind, the constructor's arguments, the
environment id and its action bounds). Written atomically;
read back with :func:`load_policy`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowkit.files import FlowkitError, atomic_path, load_tensors, read_json_object
from flowkit.rl.gaussian import GaussianPolicy
from flowkit.rl.normalizer import RunningNorm
from flowkit.rl.policy import ActionBounds, NoisyFlowPolicy

__all__ = ["POLICY_KINDS", "SavedPolicy", "build_policy", "load_policy", "save_policy"]

FORMAT = "flowkit.rl.NoisyFlowPolicy/1"


@dataclass
class SavedPolicy:
    """A loaded policy with what acting needs: the normaliser and the action bounds."""

    policy: NoisyFlowPolicy | GaussianPolicy
    normalizer: RunningNorm
    bounds: ActionBounds
    env_id: str

    @torch.no_grad()
    def act(self, obs: torch.Tensor, a0: torch.Tensor | None = None) -> torch.Tensor:
        """Noise-free environment actions for raw observations ``(B, S) -> (B, A)``."""
        return self.bounds.to_env(self.policy.deterministic(self.normalizer(obs), a0))


POLICY_KINDS = {"flow": NoisyFlowPolicy, "gaussian": GaussianPolicy}


def build_policy(kind: str, **kwargs: Any) -> NoisyFlowPolicy | GaussianPolicy:
    """A policy of ``kind`` (``flow`` or ``gaussian``) from its constructor arguments."""
    if kind not in POLICY_KINDS:
        raise FlowkitError(f"policy kind {kind!r} is not one of {sorted(POLICY_KINDS)}")
    return POLICY_KINDS[kind](**kwargs)


def save_policy(
    directory: str | os.PathLike,
    policy: NoisyFlowPolicy | GaussianPolicy,
    normalizer: RunningNorm,
    bounds: ActionBounds,
    env_id: str,
) -> Path:
    """Write ``directory`` (replacing it atomically); return its path."""
    import json

    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in policy.state_dict().items()}
    tensors.update({f"normalizer.{k}": v.cpu() for k, v in normalizer.state_dict().items()})
    meta = {
        "format": FORMAT,
        "env_id": env_id,
        "kind": policy.kind,
        "policy": policy.init_kwargs,
        "normalize_obs": normalizer.enabled,
        "action_low": bounds.low.tolist(),
        "action_high": bounds.high.tolist(),
    }
    with atomic_path(directory, is_dir=True) as tmp:
        tmp.mkdir()
        save_file(tensors, tmp / "policy.safetensors")
        (tmp / "policy.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Path(directory)


def load_policy(directory: str | os.PathLike) -> SavedPolicy:
    """Read a policy folder written by :func:`save_policy` (e.g. ``RUN/policy`` or
    ``RUN/pretrained``); errors name the folder."""
    directory = Path(directory)
    meta = read_json_object(directory / "policy.json", "policy config")
    if meta.get("format") != FORMAT:
        raise FlowkitError(
            f"{str(directory / 'policy.json')!r} is not a flowkit flow policy "
            f"(format {meta.get('format')!r}, expected {FORMAT!r})"
        )
    tensors = load_tensors(directory / "policy.safetensors", "cpu", "policy weights")
    policy = build_policy(meta.get("kind", "flow"), **meta["policy"])
    own = {k: v for k, v in tensors.items() if not k.startswith("normalizer.")}
    policy.load_state_dict(own)
    normalizer = RunningNorm(meta["policy"]["obs_dim"], enabled=meta["normalize_obs"])
    normalizer.load_state_dict(
        {k[len("normalizer.") :]: v for k, v in tensors.items() if k.startswith("normalizer.")}
    )
    bounds = ActionBounds(torch.tensor(meta["action_low"]), torch.tensor(meta["action_high"]))
    return SavedPolicy(policy.eval(), normalizer, bounds, meta["env_id"])
