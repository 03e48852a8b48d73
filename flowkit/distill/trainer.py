"""The f-distill loop: a one-step generator, a fake score network and a discriminator head
trained with alternating AdamW updates against a frozen teacher.

One step (losses in :mod:`flowkit.distill.step`)::

    generator:  L_gen(G(z))  ; backward ; clip ; warm-up lr ; AdamW ; EMA of G
    critic:     L_critic(stopgrad G(z), real data)  ; backward ; clip ; AdamW (fake, head)

The generator and the critic have their own AdamW; inside the critic's, the fake network and
the head are parameter groups with their own learning rates (``distill.fake_lr``,
``distill.disc_lr``), trained by one loss and clipped together.
                (the first critic update reuses the generator update's samples; each further
                one of ``distill.critic_steps`` draws new ones)

Built from the trainer's parts: the typed config and run directory, :class:`EMA`,
:meth:`CheckpointManager.save_named` (all three networks, the EMA generator, both
optimizers, every random state and the data position, so a resumed run is bitwise the
uninterrupted one), :class:`MetricsLog`, the batch sources, :class:`StopSignals` /
:class:`CheckpointTimer` (SIGINT / SIGTERM finish the step, checkpoint and raise
:class:`TrainingInterrupted`) and ``torchrun`` (gradients averaged over ranks). A NaN or
infinite loss stops the run with :class:`NonFiniteLossError` before a checkpoint could
save bad weights. At the end the EMA generator is saved as a
:class:`~flowkit.pipelines.OneStepPipeline` in ``RUN/pipeline/``.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from flowkit.distill.config import DistillConfig, check_distill_config
from flowkit.distill.divergences import divergence
from flowkit.distill.networks import (
    DiscriminatorHead,
    FeatureHook,
    feature_module,
    generate,
    make_fake,
    make_generator,
    probe_channels,
)
from flowkit.distill.step import DistillLosses
from flowkit.distributed import DistInfo, barrier, init_distributed
from flowkit.files import atomic_path
from flowkit.training.batches import make_batches
from flowkit.training.builders import build_data
from flowkit.training.checkpoint import CheckpointManager
from flowkit.training.config import ConfigError
from flowkit.training.ema import EMA
from flowkit.training.index_stream import IndexStream
from flowkit.training.interrupts import (
    CheckpointTimer,
    StopSignals,
    TrainingInterrupted,
    agree,
    control_group,
)
from flowkit.training.metrics_log import MetricsLog
from flowkit.training.rank_state import (
    capture_rank_state,
    gather_rank_states,
    restore_rank_state,
)
from flowkit.training.run_dir import prepare_run_dir
from flowkit.training.trainer import NonFiniteLossError, warmup_lr

FROZEN_ON_RESUME = ("teacher", "distill", "data")
LOSSES = ("gen_loss", "critic_loss")


class DistillTrainer:
    """Distils the teacher of ``config`` into a one-step generator in ``run_dir``.

    Writes ``RUN/config.yaml``, ``RUN/metrics.jsonl``, ``RUN/checkpoints/``,
    ``RUN/samples/*.png`` and ``RUN/pipeline/`` (a ``OneStepPipeline``, read by
    ``flowkit sample RUN --nfe 1`` and ``flowkit fid``).

    Raises:
        ConfigError: a bad setting, or a teacher whose sample shape differs from the data's.
    """

    def __init__(
        self, config: DistillConfig, run_dir: str | os.PathLike, resume: bool = False,
        progress: bool = True,
    ) -> None:  # fmt: skip
        from flowkit.loading import load

        check_distill_config(config)
        self.config, self.run_dir, self.progress = config, Path(run_dir), progress
        cfg, d = config, config.distill
        self.dist: DistInfo = init_distributed(cfg.train.device)
        device = self.dist.device
        teacher = load(cfg.teacher.source).to(device)
        if teacher.path is None:
            raise ConfigError(
                f"teacher.source={cfg.teacher.source!r} is a multiplicative (GBM) model: "
                "f-distill needs a field on an affine path"
            )
        self.shape = tuple(teacher.sample_shape)
        self.dataset = build_data(cfg.data, device)
        data_shape = tuple(self.dataset.sample_shape)
        if data_shape != self.shape:
            raise ConfigError(
                f"the teacher {cfg.teacher.source!r} makes samples of shape {self.shape} but "
                f"data {cfg.data.name!r} has shape {data_shape}: distil with the teacher's own "
                "training data"
            )
        self.checkpoints = CheckpointManager(self.run_dir, cfg.train.keep_checkpoints)
        prepare_run_dir(
            self.run_dir, cfg, resume, self.checkpoints, FROZEN_ON_RESUME, self.dist.is_main
        )
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        self.teacher = teacher.field.requires_grad_(False).eval()
        self.generator = make_generator(self.teacher, teacher.path.name).to(device)
        self.fake = make_fake(self.teacher).to(device)
        self.hook = self.head = None
        if d.disc_weight > 0:
            self.hook = FeatureHook(feature_module(self.fake, d.feature_module))
            channels = probe_channels(self.fake, self.hook, self.shape)
            self.head = DiscriminatorHead(channels, d.head_hidden).to(device)
        self.ema = EMA(self.generator, cfg.train.ema_decay)
        self.losses = DistillLosses(
            self.teacher, self.fake, self.head, self.hook, teacher.path, teacher.prediction,
            divergence(d.divergence), d.weighting, d.t_min, d.t_max, d.gan_weight,
            d.disc_weight, d.log_ratio_clip,
        )  # fmt: skip
        # the fake network and the head learn from one critic loss: one AdamW, a parameter
        # group (and learning rate) each, clipped together
        critic = [(self.fake, d.fake_lr or cfg.optim.lr)]
        if self.head is not None:
            critic.append((self.head, d.disc_lr or cfg.optim.lr))
        self.optimizers = {
            "generator_optim": self._adamw([(self.generator, cfg.optim.lr)]),
            "critic_optim": self._adamw(critic),
        }
        self._base_lrs = {name: [g["lr"] for g in opt.param_groups]
                          for name, opt in self.optimizers.items()}  # fmt: skip
        self._params = {name: [p for group in opt.param_groups for p in group["params"]]
                        for name, opt in self.optimizers.items()}  # fmt: skip
        rank_seed = cfg.train.seed * 1_000_003 + self.dist.rank
        self.noise = torch.Generator(device).manual_seed(rank_seed)
        stream = IndexStream(len(self.dataset), cfg.optim.batch_size, cfg.train.seed,
                             self.dist.rank, self.dist.world_size)  # fmt: skip
        self.batches = make_batches(self.dataset, stream, device, rank_seed, cfg.data.num_workers)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self.step, self._logged = 0, 0
        self._sums: dict[str, torch.Tensor] = {}
        self.timer = CheckpointTimer(cfg.train.checkpoint_minutes)
        self._control = control_group() if self.dist.enabled else None
        if resume:
            self._restore()

    def _adamw(self, groups: list[tuple[nn.Module, float]]) -> torch.optim.AdamW:
        """AdamW with ``optim``'s settings over (module, learning rate) groups; the fused
        kernel on CPU and CUDA (the optimizer steps are most of the loop's own cost on small
        networks)."""
        o = self.config.optim
        fused = self.dist.device.type in ("cpu", "cuda")
        params = [{"params": list(module.parameters()), "lr": lr} for module, lr in groups]
        return torch.optim.AdamW(params, lr=groups[0][1], betas=o.betas, eps=o.eps,
                                 weight_decay=o.weight_decay, fused=fused,
                                 foreach=None if fused else True)  # fmt: skip

    def modules(self) -> dict[str, nn.Module]:
        """The checkpointed networks by name."""
        found = {"generator": self.generator, "generator_ema": self.ema.ema_model,
                 "fake": self.fake}  # fmt: skip
        if self.head is not None:
            found["head"] = self.head
        return found

    # -- state ---------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Every rank calls it at the same step; rank 0 writes. Returns the folder."""
        window = {"sums": {k: float(v) for k, v in self._sums.items()}, "since": self._logged}
        state = capture_rank_state(self.noise, self.batches, self.dist, window)
        ranks = gather_rank_states(state, self.dist)
        if self.dist.is_main:
            self.checkpoints.save_named(self.step, self.modules(), self.optimizers,
                                        {"ranks": ranks})  # fmt: skip
        barrier()
        self.timer.reset()
        return self.checkpoints.path(self.step)

    def _restore(self) -> None:
        latest = self.checkpoints.latest()
        if latest is None:
            return  # nothing saved yet: --resume starts from scratch
        ckpt = self.checkpoints.load_named(latest, self.modules(), self.optimizers)
        mine = restore_rank_state(
            ckpt.state["ranks"], self.dist, self.noise, self.batches, latest
        )
        device = self.dist.device
        self._sums = {k: torch.tensor(v, device=device) for k, v in mine["log"]["sums"].items()}
        self.step, self._logged = ckpt.step, int(mine["log"]["since"])
        if self.dist.is_main:
            self.metrics.truncate_after(self.step)

    # -- one step ------------------------------------------------------------------------
    def _randn(self, batch: int) -> torch.Tensor:
        return torch.randn((batch, *self.shape), generator=self.noise, device=self.dist.device)

    def _update(self, loss: torch.Tensor, name: str) -> None:
        """Backward, average over ranks, clip, set the warmed-up learning rates and step the
        optimizer named ``name``."""
        optimizer, params = self.optimizers[name], self._params[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.dist.enabled:
            world = self.dist.world_size
            for p in params:
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad.div_(world)
        if self.config.optim.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, self.config.optim.grad_clip)
        warmup = self.config.optim.warmup_steps
        for group, base in zip(optimizer.param_groups, self._base_lrs[name], strict=True):
            group["lr"] = warmup_lr(base, self.step, warmup)
        optimizer.step()

    def train_step(self, autocast=None) -> dict[str, torch.Tensor]:
        """One generator update and ``critic_steps`` critic updates; detached statistics."""
        cfg, d = self.config, self.config.distill
        autocast = autocast or nullcontext()
        batch, device = cfg.optim.batch_size, self.dist.device
        z, eps = self._randn(batch), self._randn(batch)
        t = self.losses.times(batch, self.noise, device)
        with autocast:
            gen_loss, x, stats = self.losses.generator_loss(z, eps, t, self.generator)
            gen_loss = gen_loss.mean()
        self._update(gen_loss, "generator_optim")
        self.ema.update()
        stats["gen_loss"] = gen_loss.detach()
        for k in range(d.critic_steps):
            if k > 0:
                with torch.no_grad(), autocast:
                    x = generate(self.generator, self._randn(batch))
            real = self.batches.next().x1 if self.head is not None else None
            eps, eps_real = self._randn(batch), self._randn(batch)
            t = self.losses.times(batch, self.noise, device)
            with autocast:
                critic_loss, critic_stats = self.losses.critic_loss(x, real, eps, eps_real, t)
                critic_loss = critic_loss.mean()
            self._update(critic_loss, "critic_optim")
        stats.update(critic_stats, critic_loss=critic_loss.detach())
        return stats

    # -- the loop ------------------------------------------------------------------------
    def _check_finite(self) -> None:
        bad = [k for k in LOSSES if k in self._sums and not bool(torch.isfinite(self._sums[k]))]
        if bad:
            latest = self.checkpoints.latest()
            kept = f"the last good checkpoint is {str(latest)!r}" if latest else (
                "no checkpoint was saved")  # fmt: skip
            raise NonFiniteLossError(
                f"the {' and '.join(bad)} became NaN or infinite between step "
                f"{self._logged + 1} and step {self.step}; the run stopped and {kept}. Lower "
                "optim.lr or distill.fake_lr, set optim.grad_clip, or narrow distill.t_min/t_max."
            )

    def fit(self) -> Path:
        """Train to ``train.steps``; return the folder of the saved pipeline.

        Raises:
            TrainingInterrupted: SIGINT or SIGTERM arrived; the step in progress finished and
                was checkpointed.
            NonFiniteLossError: a loss became NaN or infinite.
        """
        cfg = self.config.train
        autocast = (torch.autocast(self.dist.device.type, dtype=torch.bfloat16)
                    if cfg.precision == "bf16" else nullcontext())  # fmt: skip
        bar = tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not (self.progress and self.dist.is_main),
                   desc=f"distill {self.config.distill.divergence}")  # fmt: skip
        with StopSignals() as stop:
            try:
                self._loop(autocast, bar, stop)
            finally:
                bar.close()
            stop.immediate = True  # a signal now has no step to finish: abort the writes
            if self.dist.is_main:
                self.snapshot("final.png")
                self._save_pipeline()
        barrier()
        return self.run_dir / "pipeline"

    def _loop(self, autocast, bar: tqdm, stop: StopSignals) -> None:
        cfg = self.config.train
        tic, timed_from = time.perf_counter(), self.step
        self.timer.reset()
        while self.step < cfg.steps:
            stats = self.train_step(autocast)
            for key, value in stats.items():
                self._sums[key] = self._sums.get(key, 0.0) + value.float()
            self.step += 1
            bar.update(1)
            flags = [stop.signum or 0, int(self.timer.due())]
            stop_signal, time_due = agree(flags, self._control) if self.dist.enabled else flags
            at_log = self.step % cfg.log_every == 0 or self.step == cfg.steps
            at_ckpt = self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps
            at_ckpt = at_ckpt or bool(time_due) or bool(stop_signal)
            if at_log or at_ckpt:
                self._check_finite()
            if at_log:
                count = self.step - self._logged
                record = {"step": self.step}
                record.update({k: float(v) / count for k, v in sorted(self._sums.items())})
                elapsed = time.perf_counter() - tic
                record["steps_per_s"] = (self.step - timed_from) / max(elapsed, 1e-9)
                bar.set_postfix(gen=f"{record['gen_loss']:.3g}",
                                critic=f"{record['critic_loss']:.3g}")  # fmt: skip
                if self.dist.is_main:
                    self.metrics.write(record)
                self._sums = {}
                self._logged, timed_from, tic = self.step, self.step, time.perf_counter()
            if at_ckpt:
                saved = self.save_checkpoint()
            if stop_signal:
                raise TrainingInterrupted(stop_signal, self.step, saved)
            if cfg.sample_every and self.step % cfg.sample_every == 0 and self.dist.is_main:
                self.snapshot(f"step-{self.step:08d}.png")

    # -- outputs -------------------------------------------------------------------------
    @torch.no_grad()
    def samples(self, num: int, seed: int) -> torch.Tensor:
        """``num`` samples of the EMA generator from the noise of ``(seed, i)``."""
        from flowkit.solvers import seeded_noise

        z = seeded_noise(self.shape, range(num), seed).to(self.dist.device)
        return generate(self.ema.ema_model, z).cpu()

    def snapshot(self, name: str) -> Path | None:
        """EMA-generator samples from fixed noise: a PNG grid (images) or scatter (2-D)."""
        from flowkit.data import save_image_grid, save_scatter

        if not (len(self.shape) == 3 or self.shape == (2,)):
            return None
        samples = self.samples(self.config.train.sample_num, self.config.train.seed + 12345)
        out = self.run_dir / "samples" / name
        if len(self.shape) == 3:
            return save_image_grid(samples, out)
        x = getattr(self.dataset, "x", None)
        return save_scatter(samples, out, reference=None if x is None else x[:5000])

    def _save_pipeline(self) -> None:
        from flowkit.pipelines import OneStepPipeline

        pipeline = OneStepPipeline(generator=self.ema.ema_model)
        with atomic_path(self.run_dir / "pipeline", is_dir=True) as tmp:
            pipeline.save_pretrained(tmp)
