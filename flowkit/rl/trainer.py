"""The ReinFlow loop: pretrain (behaviour cloning), then iterations of rollout -> GAE -> PPO.

Built from the training package's parts: the typed config and run directory
(:func:`prepare_run_dir`), :class:`CheckpointManager` (named modules and optimizers),
:class:`MetricsLog`, :class:`StopSignals` / :class:`CheckpointTimer`. One iteration is

    sigma_max <- schedule(iteration) ;  reset envs with seeds (seed, iteration) ;
    rollout of T steps x N envs with the noisy chain ;  GAE ;  PPO epochs (KL early stop) ;
    noise-free evaluation every ``ppo.eval_every`` iterations.

Checkpoints are written only at iteration boundaries, and nothing carries over from one
rollout to the next except what is checkpointed (weights, optimizers, the observation
normaliser, the generators' states): the environments restart from seeds that depend on
``(seed, iteration)`` alone. A resumed run therefore equals an uninterrupted one, weight
for weight. Outputs: ``RUN/config.yaml``, ``RUN/metrics.jsonl`` (one record per iteration,
``step`` = iterations done; record 0 is the pretrained policy), ``RUN/checkpoints/``,
``RUN/pretrained/`` and ``RUN/policy/`` (:mod:`flowkit.rl.saved`).
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowkit.rl.advantages import gae
from flowkit.rl.config import FROZEN_ON_RESUME, ReinFlowConfig
from flowkit.rl.demonstrations import (
    CONTROLLERS,
    load_demonstrations,
    make_demonstrations,
    policy_demonstrations,
)
from flowkit.rl.envs import check_spaces, iteration_seeds, make_envs
from flowkit.rl.loop import IterationLoop, torch_threads
from flowkit.rl.networks import ValueNet
from flowkit.rl.normalizer import RunningNorm
from flowkit.rl.policy import ActionBounds, NoisyFlowPolicy, check_noise_bounds
from flowkit.rl.ppo import PPOBatch, PPOSettings, ppo_update
from flowkit.rl.pretrain import behaviour_clone
from flowkit.rl.rollout import collect_rollout, evaluate
from flowkit.rl.saved import build_policy, load_policy, save_policy
from flowkit.training.checkpoint import decode_rng, encode_rng
from flowkit.training.config import ConfigError
from flowkit.training.trainer import NonFiniteLossError

__all__ = ["ReinFlowTrainer", "noise_bound", "torch_threads"]


def noise_bound(start: float, end: float | None, iteration: int, iterations: int) -> float:
    """The schedule of ``sigma_max``: linear from ``start`` to ``end`` over the run."""
    if end is None or iterations <= 1:
        return start
    return start + (end - start) * min(1.0, iteration / (iterations - 1))


def _check(config: ReinFlowConfig) -> None:
    if config.task != "policy":
        raise ConfigError(f"task={config.task!r} in a policy config; expected 'policy' (a "
                          "'generator' config is run by GeneratorRewardTrainer)")  # fmt: skip
    check_noise_bounds(config.policy.sigma_min, config.policy.sigma_max)
    checks = [
        ("env.num_envs", config.env.num_envs, 1),
        ("env.steps_per_iteration", config.env.steps_per_iteration, 1),
        ("ppo.iterations", config.ppo.iterations, 0),
        ("ppo.eval_every", config.ppo.eval_every, 0),
        ("ppo.eval_episodes", config.ppo.eval_episodes, 0),
        ("train.checkpoint_every", config.train.checkpoint_every, 1),
        ("train.threads", config.train.threads, 0),
    ]
    for key, value, low in checks:
        if value < low:
            raise ConfigError(f"{key}={value}; expected an integer >= {low}")
    if config.policy.kind not in ("flow", "gaussian"):
        raise ConfigError(f"policy.kind={config.policy.kind!r}; expected 'flow' or 'gaussian'")
    if config.policy.kind == "gaussian" and config.pretrain.demonstrations:
        raise ConfigError(
            "policy.kind='gaussian' trains a demonstrator from scratch; set "
            "pretrain.demonstrations=null"
        )
    end = config.ppo.sigma_max_end
    if end is not None and end < config.policy.sigma_min:
        raise ConfigError(
            f"ppo.sigma_max_end={end} is below policy.sigma_min={config.policy.sigma_min}; "
            "the noise bounds would be reversed"
        )


class ReinFlowTrainer(IterationLoop):
    """Fine-tunes a flow policy with ReinFlow into ``run_dir`` (module docstring).

    The loop, checkpoints and resume are :class:`flowkit.rl.loop.IterationLoop`'s; this
    class supplies the environments, networks, pretraining, rollout + PPO and evaluation.
    """

    counter = "env_steps"
    env_steps: int

    def __init__(
        self,
        config: ReinFlowConfig,
        run_dir: str | os.PathLike,
        resume: bool = False,
        progress: bool = True,
    ) -> None:
        _check(config)
        self._open_run(config, run_dir, resume, progress, FROZEN_ON_RESUME)
        cfg = config
        env = cfg.env
        self.envs = make_envs(env.id, env.num_envs, env.max_episode_steps, env.kwargs)
        obs_dim, action_dim = check_spaces(self.envs)
        self.eval_envs = None
        if cfg.ppo.eval_episodes > 0:
            self.eval_envs = make_envs(env.id, cfg.ppo.eval_episodes, env.max_episode_steps,
                                       env.kwargs)  # fmt: skip
        self.bounds = ActionBounds.from_space(self.envs.single_action_space)
        p = cfg.policy
        if p.kind == "gaussian":
            self.policy = build_policy(
                "gaussian", obs_dim=obs_dim, action_dim=action_dim, hidden_dim=p.hidden_dim,
                num_layers=p.num_layers,
            )  # fmt: skip
        else:
            self.policy = NoisyFlowPolicy(obs_dim, action_dim, p.steps, p.sigma_min,
                                          p.sigma_max, p.hidden_dim, p.num_layers,
                                          p.noise_hidden_dim, p.noise_layers)  # fmt: skip
        self.value = ValueNet(obs_dim, p.value_hidden_dim, p.value_layers)
        self.normalizer = RunningNorm(obs_dim, enabled=p.normalize_obs)
        self.reference = copy.deepcopy(self.policy).requires_grad_(False)
        self.actor_optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.ppo.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.value.parameters(), lr=cfg.ppo.critic_lr)
        self._open_loop(resume)

    # -- state -----------------------------------------------------------------------------
    def _named(self) -> tuple[dict[str, Any], dict[str, Any]]:
        modules = {"policy": self.policy, "value": self.value, "normalizer": self.normalizer,
                   "reference": self.reference}  # fmt: skip
        return modules, {"actor_optimizer": self.actor_optimizer,
                         "critic_optimizer": self.critic_optimizer}  # fmt: skip

    def _extra_state(self) -> dict[str, Any]:
        return {"torch": encode_rng(torch.get_rng_state())}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(decode_rng(state["torch"]))
        self.normalizer.frozen = not self.config.policy.update_obs_norm

    def _start(self) -> dict[str, Any]:
        """Pretrain (or load ``policy.init_from``) and evaluate it: record 0."""
        cfg = self.config
        tic = time.perf_counter()
        record: dict[str, Any] = {"step": 0, "env_steps": 0}
        if cfg.policy.init_from:
            saved = load_policy(cfg.policy.init_from)
            check_spaces(self.envs, saved.policy.action_dim)
            noise = ("sigma_min", "sigma_max")  # the bounds may change; the networks may not
            mine = {k: v for k, v in self.policy.init_kwargs.items() if k not in noise}
            theirs = {k: v for k, v in saved.policy.init_kwargs.items() if k not in noise}
            if saved.policy.kind != self.policy.kind or mine != theirs:
                raise ConfigError(
                    f"policy.init_from={cfg.policy.init_from!r} holds a {saved.policy.kind} "
                    f"policy {theirs}; the policy section builds a {self.policy.kind} policy "
                    f"{mine}: make them agree"
                )
            self.policy.load_state_dict(saved.policy.state_dict())
            self.normalizer.load_state_dict(saved.normalizer.state_dict())
        elif cfg.pretrain.demonstrations:
            record.update(self._pretrain())
        self.reference.load_state_dict(self.policy.state_dict())
        self.normalizer.frozen = not cfg.policy.update_obs_norm
        save_policy(self.run_dir / "pretrained", self.policy, self.normalizer, self.bounds,
                    cfg.env.id)  # fmt: skip
        self.wall_s = time.perf_counter() - tic
        record["pretrain_s"] = self.wall_s
        record.update(self._evaluate())
        record["wall_s"] = self.wall_s
        return record

    def _pretrain(self) -> dict[str, Any]:
        pre, seed = self.config.pretrain, self.config.train.seed
        name = pre.demonstrations
        if name in CONTROLLERS:
            demos = make_demonstrations(name, pre.episodes, seed, pre.action_noise)
        elif Path(name).is_dir():
            demos = policy_demonstrations(name, self.config.env.id, pre.episodes, seed,
                                          pre.action_noise)  # fmt: skip
        else:
            demos = load_demonstrations(name)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + 3)
        losses = behaviour_clone(self.policy, self.normalizer, self.bounds, demos["obs"],
                                 demos["actions"], pre.steps, pre.lr, pre.batch_size,
                                 generator)  # fmt: skip
        out = {"bc_loss": losses[-1] if losses else None, "demo_transitions": len(demos["obs"])}
        if "returns" in demos:
            out["demo_return"] = float(demos["returns"].mean())
        return out

    def _evaluate(self) -> dict[str, Any]:
        if self.eval_envs is None:
            return {}
        cfg = self.config
        seeds = iteration_seeds(cfg.train.seed, self.iteration, cfg.ppo.eval_episodes, stream=1)
        gen = torch.Generator().manual_seed(seeds[0])
        returns = evaluate(self.eval_envs, self.policy, self.normalizer, self.bounds, seeds, gen)
        return {"eval_return": float(np.mean(returns)), "eval_return_std": float(np.std(returns))}

    # -- the loop --------------------------------------------------------------------------
    def _iterate(self) -> dict[str, Any]:
        cfg, ppo = self.config, self.config.ppo
        it = self.iteration
        sigma_max = noise_bound(cfg.policy.sigma_max, ppo.sigma_max_end, it, ppo.iterations)
        self.policy.set_noise_bounds(cfg.policy.sigma_min, sigma_max)
        seeds = iteration_seeds(cfg.train.seed, it, cfg.env.num_envs)
        roll = collect_rollout(self.envs, self.policy, self.value, self.normalizer, self.bounds,
                               cfg.env.steps_per_iteration, seeds, self.noise,
                               ppo.reward_scale)  # fmt: skip
        adv, ret = gae(roll.rewards, roll.values, roll.next_values, roll.terminated, roll.done,
                       ppo.gamma, ppo.lam)  # fmt: skip
        obs, chain = roll.obs.flatten(0, 1), roll.chain.flatten(0, 1)
        reference = None
        if ppo.bc_coef > 0:
            with torch.no_grad():
                reference = self.reference.deterministic(obs, chain[:, 0])
        batch = PPOBatch(obs, chain, roll.log_prob.flatten(), adv.flatten(), ret.flatten(),
                         reference)  # fmt: skip
        settings = PPOSettings(ppo.epochs, ppo.minibatch_size, ppo.clip, ppo.vf_coef,
                               ppo.ent_coef, ppo.bc_coef, ppo.target_kl, ppo.grad_clip)  # fmt: skip
        warmup = it < ppo.critic_warmup_iterations
        for group in self.actor_optimizer.param_groups:
            group["lr"] = 0.0 if warmup else ppo.actor_lr
        for group in self.critic_optimizer.param_groups:
            group["lr"] = ppo.critic_lr
        try:
            stats = ppo_update(self.policy, self.value, self.actor_optimizer,
                               self.critic_optimizer, batch, settings, self.shuffle)  # fmt: skip
        except FloatingPointError as error:
            latest = self.checkpoints.latest()
            raise NonFiniteLossError(
                f"the PPO loss became NaN or infinite at iteration {it + 1}; the last good "
                f"checkpoint is {str(latest)!r}. Lower ppo.actor_lr / ppo.critic_lr or set "
                "ppo.reward_scale to bring returns near 1"
            ) from error
        self.env_steps += roll.env_steps
        record = {"step": it + 1, "env_steps": self.env_steps, "sigma_max": sigma_max}
        record["train_return"] = (
            float(np.mean(roll.episode_returns)) if roll.episode_returns else None
        )
        record["episodes"] = len(roll.episode_returns)
        record.update(stats)
        return record

    def _description(self) -> str:
        return f"reinflow {self.config.env.id} K={self.config.policy.steps}"

    def _postfix(self, record: dict[str, Any]) -> dict[str, str] | None:
        shown = record.get("eval_return", record["train_return"])
        return None if shown is None else {"ret": f"{shown:.1f}"}

    def _final_save(self) -> Path:
        """Save ``RUN/policy/`` (:func:`flowkit.rl.saved.save_policy`)."""
        return save_policy(self.run_dir / "policy", self.policy, self.normalizer,
                           self.bounds, self.config.env.id)  # fmt: skip

    def close(self) -> None:
        """Close the environments."""
        self.envs.close()
        if self.eval_envs is not None:
            self.eval_envs.close()
