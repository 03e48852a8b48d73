"""PPO on the noisy chain: the clipped surrogate, the value loss, entropy and BC terms, and
epochs of minibatch updates with an approximate-KL early stop.

For a minibatch of stored chains with their rollout log-likelihoods ``l_old`` and
advantages ``A`` (normalised to mean 0, std 1 within the minibatch):

    r = exp(log p_theta(chain | s) - l_old),
    L_clip = -mean min(r A, clip(r, 1 - eps, 1 + eps) A),
    L_V    = mean (1/2) (V(s) - R)^2,
    L_BC   = mean || a_det(s, a_0; theta) - a_det(s, a_0; theta_pretrained) ||^2,
    loss   = L_clip + c_V L_V - c_H H + c_BC L_BC,

where ``H`` is the mean entropy of the chain's Gaussian steps and ``a_det`` the noise-free
chain from the stored ``a_0`` (the frozen policy's action is computed once per rollout).
After every minibatch the approximate KL ``mean((r - 1) - log r)`` (Schulman's unbiased
estimator) is checked; above ``target_kl`` the update stops. Nothing here reads an
environment: a batch is plain tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flowkit.rl.policy import NoisyFlowPolicy

__all__ = ["PPOBatch", "PPOSettings", "clipped_surrogate", "ppo_loss", "ppo_update"]


@dataclass
class PPOBatch:
    """``M`` transitions: ``obs`` ``(M, S)`` (normalised, as the policy saw them), ``chain``
    ``(M, K + 1, A)``, ``log_prob``, ``advantages``, ``returns`` ``(M,)`` and, for the BC
    term, the frozen policy's noise-free ``reference`` action ``(M, A)`` or None."""

    obs: Tensor
    chain: Tensor
    log_prob: Tensor
    advantages: Tensor
    returns: Tensor
    reference: Tensor | None = None

    def __len__(self) -> int:
        return self.obs.shape[0]

    def take(self, index: Tensor) -> PPOBatch:
        ref = None if self.reference is None else self.reference[index]
        return PPOBatch(self.obs[index], self.chain[index], self.log_prob[index],
                        self.advantages[index], self.returns[index], ref)  # fmt: skip


@dataclass
class PPOSettings:
    """The update's hyperparameters (ReinFlow's Hopper defaults where they have one)."""

    epochs: int = 5
    minibatch_size: int = 1000
    clip: float = 0.01
    vf_coef: float = 1.0
    ent_coef: float = 0.0
    bc_coef: float = 0.0
    target_kl: float | None = 0.01
    grad_clip: float | None = 1.0
    normalize_advantages: bool = True


def clipped_surrogate(
    new_log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    clip: float,
    normalize_advantages: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate ``L_clip`` of ``(M,)`` log-likelihoods and advantages
    (module docstring), and its statistics: ``approx_kl`` ``mean((r - 1) - log r)``,
    ``clip_frac`` (the share with ``|r - 1| > clip``) and ``ratio_dev`` ``max |r - 1|``."""
    log_ratio = new_log_prob - old_log_prob
    ratio = torch.exp(log_ratio)
    adv = advantages
    if normalize_advantages and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    clipped = ratio.clamp(1 - clip, 1 + clip)
    loss = -torch.minimum(ratio * adv, clipped * adv).mean()
    with torch.no_grad():
        stats = {
            "approx_kl": ((ratio - 1) - log_ratio).mean(),
            "clip_frac": ((ratio - 1).abs() > clip).float().mean(),
            "ratio_dev": (ratio - 1).abs().max(),
        }
    return loss, stats


def ppo_loss(
    policy: NoisyFlowPolicy, value: nn.Module, batch: PPOBatch, settings: PPOSettings
) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss of one minibatch and its statistics (detached scalars)."""
    new_log_prob = policy.log_prob(batch.obs, batch.chain)
    policy_loss, surrogate = clipped_surrogate(
        new_log_prob, batch.log_prob, batch.advantages, settings.clip,
        settings.normalize_advantages,
    )  # fmt: skip
    value_loss = 0.5 * (value(batch.obs) - batch.returns).square().mean()
    entropy = policy.entropy(batch.obs).mean()
    loss = policy_loss + settings.vf_coef * value_loss - settings.ent_coef * entropy
    stats = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy}
    if settings.bc_coef > 0:
        if batch.reference is None:
            raise ValueError("ppo.bc_coef > 0 needs the frozen policy's reference actions")
        det = policy.deterministic(batch.obs, batch.chain[:, 0])
        bc = (det - batch.reference).square().sum(dim=-1).mean()
        loss = loss + settings.bc_coef * bc
        stats["bc_loss"] = bc
    stats.update(surrogate)
    return loss, {k: v.detach() for k, v in stats.items()}


def ppo_update(
    policy: NoisyFlowPolicy,
    value: nn.Module,
    actor_optimizer: torch.optim.Optimizer,
    critic_optimizer: torch.optim.Optimizer,
    batch: PPOBatch,
    settings: PPOSettings,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Epochs of shuffled minibatch steps on ``batch``; stop early when the approximate KL
    of a minibatch exceeds ``target_kl``. Returns the mean statistics of the minibatches
    run, ``first_ratio_dev`` (``max |r - 1|`` of the first minibatch: 0 up to rounding,
    since acting and scoring share one grid and one noise bound), ``epochs`` (fractional
    when stopped early) and ``stopped_early``."""
    if settings.epochs < 1 or settings.minibatch_size < 1:
        raise ValueError(
            f"ppo.epochs={settings.epochs} and ppo.minibatch_size={settings.minibatch_size} "
            "must be >= 1"
        )
    size = len(batch)
    per_epoch = max(1, -(-size // settings.minibatch_size))
    params = {"actor": list(policy.parameters()), "critic": list(value.parameters())}
    totals: dict[str, float] = {}
    done, first_dev, stopped = 0, None, False
    for _ in range(settings.epochs):
        order = torch.randperm(size, generator=generator)
        for start in range(0, size, settings.minibatch_size):
            mini = batch.take(order[start : start + settings.minibatch_size])
            loss, stats = ppo_loss(policy, value, mini, settings)
            if not torch.isfinite(loss):
                raise FloatingPointError("the PPO loss is NaN or infinite")
            actor_optimizer.zero_grad(set_to_none=True)
            critic_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip is not None:
                for group in params.values():
                    nn.utils.clip_grad_norm_(group, settings.grad_clip)
            actor_optimizer.step()
            critic_optimizer.step()
            done += 1
            if first_dev is None:
                first_dev = float(stats["ratio_dev"])
            for key, val in stats.items():
                totals[key] = totals.get(key, 0.0) + float(val)
            if settings.target_kl is not None and float(stats["approx_kl"]) > settings.target_kl:
                stopped = True
                break
        if stopped:
            break
    out = {key: val / done for key, val in totals.items()}
    out.update(first_ratio_dev=first_dev or 0.0, epochs=done / per_epoch, stopped_early=stopped)
    return out
