"""ReinFlow for generators: PPO with one-step episodes on a flow's noisy Euler chain.

One iteration, with ``B`` chains of the current generator (:class:`NoisyFlowGenerator`):

    chains x_0..x_K ~ p_theta_old ;  r = reward(clip(x_K, -1, 1)) ;  A = r - mean_B(r) ;
    mu_ref_k = x_k + v_ref(x_k, t_k) / K  (the frozen pretrained field, once) ;
    epochs x minibatches:  loss = L_clip(log p_theta(chain), log p_theta_old(chain), A)
                                  + kl_coef * mean sum_{k,j} (mu - mu_ref)^2 / (2 sg(sigma)^2),

with ``L_clip`` PPO's clipped surrogate (:func:`flowkit.rl.ppo.clipped_surrogate`,
advantages normalised per minibatch) and the KL term the exact KL between the fine-tuned
and the frozen chains' kernels at the stored states (:func:`flowkit.rl.generator.step_kl`;
``sigma`` is detached there, so the noise cannot buy a smaller KL by growing). The baseline
is the batch mean of the rewards (an episode is one chain; no critic). ``log p_theta_old``
is scored by the same batched function as the update, so the first ratio is 1.

Parts from the training package as in :class:`flowkit.rl.trainer.ReinFlowTrainer`: run
directory, :class:`CheckpointManager` (``save_named``: field, noise, reference, optimizer,
generators' states), metrics log, stop signals. Outputs: ``RUN/config.yaml``,
``RUN/metrics.jsonl`` (record 0: the pretrained model), ``RUN/checkpoints/`` and
``RUN/pipeline/``: the fine-tuned field as a rectified-flow pipeline that ``flowkit sample
RUN --nfe K`` and ``flowkit fid RUN`` read (sampled noise-free; the noise net is not part
of it). Resume equals an uninterrupted run, weight for weight.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowkit.files import atomic_path
from flowkit.rl.generator import (
    NoisyFlowGenerator,
    Reward,
    digits_class_reward,
    load_velocity_model,
    step_kl,
)
from flowkit.rl.generator_config import GENERATOR_FROZEN_ON_RESUME, GeneratorRewardConfig
from flowkit.rl.loop import IterationLoop
from flowkit.rl.policy import bounded_sigma, chain_log_prob, check_noise_bounds
from flowkit.rl.ppo import clipped_surrogate
from flowkit.training.config import ConfigError
from flowkit.training.trainer import NonFiniteLossError

__all__ = ["GeneratorRewardTrainer", "build_reward"]

REWARDS = ("digits_class",)


def build_reward(config: GeneratorRewardConfig) -> Reward:
    """The reward a config names (``reward.kind``)."""
    if config.reward.kind == "digits_class":
        return digits_class_reward(config.reward.target, config.reward.weights)
    raise ConfigError(f"reward.kind={config.reward.kind!r}; expected one of {list(REWARDS)} "
                      "(or pass a reward callable to GeneratorRewardTrainer)")  # fmt: skip


def _check(config: GeneratorRewardConfig) -> None:
    if config.task != "generator":
        raise ConfigError(f"task={config.task!r} in a generator config; expected 'generator'")
    check_noise_bounds(config.generator.sigma_min, config.generator.sigma_max)
    ppo = config.ppo
    for key, value, low in (
        ("generator.steps", config.generator.steps, 1),
        ("ppo.iterations", ppo.iterations, 0),
        ("ppo.batch_size", ppo.batch_size, 1),
        ("ppo.epochs", ppo.epochs, 1),
        ("ppo.minibatch_size", ppo.minibatch_size, 1),
        ("ppo.eval_every", ppo.eval_every, 0),
        ("ppo.eval_num", ppo.eval_num, 0),
        ("train.checkpoint_every", config.train.checkpoint_every, 1),
        ("train.threads", config.train.threads, 0),
    ):
        if value < low:
            raise ConfigError(f"{key}={value}; expected an integer >= {low}")
    if ppo.kl_coef < 0 or ppo.lr < 0 or ppo.noise_lr < 0:
        raise ConfigError(f"ppo.kl_coef={ppo.kl_coef}, ppo.lr={ppo.lr} and "
                          f"ppo.noise_lr={ppo.noise_lr} must be >= 0")  # fmt: skip


class GeneratorRewardTrainer(IterationLoop):
    """Fine-tunes a flow generator against a reward into ``run_dir`` (module docstring).

    The loop, checkpoints and resume are :class:`flowkit.rl.loop.IterationLoop`'s; this
    class supplies the generator, the reward, the PPO iteration and evaluation.

    Args:
        config: the run's config.
        run_dir: the run directory.
        resume: continue from the latest checkpoint.
        progress: show a progress bar.
        reward: a reward callable overriding ``config.reward`` (tests, custom rewards).
    """

    counter = "samples"
    samples: int

    def __init__(
        self,
        config: GeneratorRewardConfig,
        run_dir: str | os.PathLike,
        resume: bool = False,
        progress: bool = True,
        reward: Reward | None = None,
    ) -> None:
        _check(config)
        cfg = config
        loaded = load_velocity_model(cfg.generator.model)  # before the run directory is made
        self.loaded = loaded
        self._open_run(config, run_dir, resume, progress, GENERATOR_FROZEN_ON_RESUME)
        g = cfg.generator
        self.generator = NoisyFlowGenerator(loaded.field.requires_grad_(True), loaded.sample_shape,
                                            g.steps, g.sigma_min, g.sigma_max)  # fmt: skip
        self.reference = self.generator.frozen_copy()
        self.reward = reward if reward is not None else build_reward(cfg)
        self.optimizer = torch.optim.Adam([
            {"params": list(self.generator.field.parameters()), "lr": cfg.ppo.lr},
            {"params": [self.generator.noise], "lr": cfg.ppo.noise_lr},
        ])  # fmt: skip
        self._open_loop(resume)

    # -- state -----------------------------------------------------------------------------
    def _named(self) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
        return {"generator": self.generator, "reference": self.reference}, {
            "optimizer": self.optimizer
        }

    def _start(self) -> dict[str, Any]:
        return {"step": 0, "samples": 0, **self.evaluate(), "wall_s": 0.0}

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, num: int | None = None, seed: int | None = None) -> dict[str, float]:
        """The mean reward of ``num`` (default ``ppo.eval_num``) noise-free K-step samples
        from fixed seeded noise (``flowkit.load``'s noise of ``(seed, i)``)."""
        num = self.config.ppo.eval_num if num is None else num
        if num == 0:
            return {}
        seed = self.config.train.seed if seed is None else seed
        total = 0.0
        for start in range(0, num, 512):
            x0 = self.loaded.noise(range(start, min(num, start + 512)), seed)
            x = self.generator.deterministic(x0).clamp(-1, 1)
            total += float(self.reward(x).sum())
        return {"eval_reward": total / num}

    def _evaluate(self) -> dict[str, Any]:
        return self.evaluate()

    # -- the loop --------------------------------------------------------------------------
    def _iterate(self) -> dict[str, Any]:
        ppo, gen = self.config.ppo, self.generator
        with torch.no_grad():
            chains = gen.sample(ppo.batch_size, self.noise).chain
            old_log_prob = gen.log_prob(chains)  # the update's own scoring: first ratio 1
            rewards = self.reward(chains[:, -1].clamp(-1, 1)).float()
            advantages = rewards - rewards.mean()
            reference = gen.means(chains, self.reference)
        size = len(chains)
        totals: dict[str, float] = {}
        done, first_dev, stopped = 0, None, False
        for _ in range(ppo.epochs):
            order = torch.randperm(size, generator=self.shuffle)
            for start in range(0, size, ppo.minibatch_size):
                idx = order[start : start + ppo.minibatch_size]
                chain = chains[idx]
                means, sigmas = gen.means(chain), gen.sigmas(len(idx))
                new_log_prob = chain_log_prob(chain, means, sigmas)
                surrogate, stats = clipped_surrogate(new_log_prob, old_log_prob[idx],
                                                     advantages[idx], ppo.clip)  # fmt: skip
                kl = step_kl(means, reference[idx], sigmas.detach()).mean()
                loss = surrogate + ppo.kl_coef * kl
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"the PPO loss became NaN or infinite at iteration {self.iteration + 1};"
                        f" the last good checkpoint is {str(self.checkpoints.latest())!r}. "
                        "Lower ppo.lr or raise generator.sigma_min"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if ppo.grad_clip is not None:
                    nn.utils.clip_grad_norm_(list(gen.parameters()), ppo.grad_clip)
                self.optimizer.step()
                done += 1
                first_dev = float(stats["ratio_dev"]) if first_dev is None else first_dev
                stats.update(policy_loss=surrogate.detach(), kl=kl.detach())
                for key, val in stats.items():
                    totals[key] = totals.get(key, 0.0) + float(val)
                if ppo.target_kl is not None and float(stats["approx_kl"]) > ppo.target_kl:
                    stopped = True
                    break
            if stopped:
                break
        self.samples += size
        sigma = bounded_sigma(gen.noise.detach(), gen.sigma_min, gen.sigma_max)
        record: dict[str, Any] = {"step": self.iteration + 1, "samples": self.samples,
                                  "reward_mean": float(rewards.mean()),
                                  "reward_std": float(rewards.std())}  # fmt: skip
        record.update({key: val / done for key, val in totals.items()})
        record.update(first_ratio_dev=first_dev or 0.0, stopped_early=stopped,
                      sigma_mean=float(sigma.mean()), sigma_min_step=float(sigma.min()),
                      sigma_max_step=float(sigma.max()))  # fmt: skip
        return record

    def _description(self) -> str:
        return f"reinflow generator K={self.config.generator.steps}"

    def _postfix(self, record: dict[str, Any]) -> dict[str, str] | None:
        return {"reward": f"{record['reward_mean']:.3f}", "kl": f"{record.get('kl', 0.0):.2f}"}

    def _final_save(self) -> Path:
        """Save ``RUN/pipeline/`` (:meth:`save_pipeline`)."""
        return self.save_pipeline()

    def save_pipeline(self) -> Path:
        """The fine-tuned field as ``RUN/pipeline/`` (a :class:`RectifiedFlowPipeline` with an
        Euler scheduler on the rectified path, as ``flowkit train`` saves a flow)."""
        from flowkit.pipelines import FlowEulerScheduler, RectifiedFlowPipeline

        scheduler = FlowEulerScheduler(prediction="velocity", path="rectified")
        pipeline = RectifiedFlowPipeline(model=self.generator.field, scheduler=scheduler)
        target = self.run_dir / "pipeline"
        with atomic_path(target, is_dir=True) as tmp:
            pipeline.save_pretrained(tmp)
        return target
