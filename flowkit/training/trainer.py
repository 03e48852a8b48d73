"""The training loop for one network and a per-sample loss.

Built from parts the other loops (distillation, RL, online reflow) reuse: the config,
:class:`EMA`, :class:`CheckpointManager`, :class:`MetricsLog`, the batch sources, the
process group and the snapshot writer. One step is

    loss = mean_i L_i ;  backward ;  clip ||grad|| ;  lr = lr * min(1, (step + 1) / warmup) ;
    AdamW step ;  EMA update

and a resumed run replays exactly the batches, noise and times an uninterrupted run
draws: the data position, every random-number-generator state and the running loss sum of
the current logging window are checkpointed, after any step.

Checkpoints come every ``train.checkpoint_every`` steps, every ``train.checkpoint_minutes``
of wall time, at the last step, and when SIGINT or SIGTERM asks the run to stop: the step
in progress finishes, a checkpoint is written and :class:`TrainingInterrupted` is raised
(see :mod:`flowkit.training.interrupts`). Under ``torchrun`` the ranks agree on both
decisions each step, so they all checkpoint and stop at the same step.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from flowkit.distributed import DistInfo, barrier, init_distributed
from flowkit.files import FlowkitError, atomic_path
from flowkit.models.acceleration import accelerate
from flowkit.training.batches import make_batches
from flowkit.training.builders import (
    REFLOW_DATA,
    build_data,
    build_model,
    build_objective,
    count_parameters,
)
from flowkit.training.checkpoint import CheckpointManager
from flowkit.training.config import ConfigError, RunConfig
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
from flowkit.training.pipeline_of import pipeline_of
from flowkit.training.rank_state import (
    capture_rank_state,
    gather_rank_states,
    restore_rank_state,
)
from flowkit.training.run_dir import prepare_run_dir
from flowkit.training.snapshots import write_snapshot

PRECISIONS = ("fp32", "bf16")
FROZEN_ON_RESUME = ("data", "model", "objective")


class NonFiniteLossError(FlowkitError, RuntimeError):
    """The loss became NaN or infinite; the run stopped without saving the bad weights."""


def warmup_lr(base_lr: float, step: int, warmup_steps: int) -> float:
    """Linear warm-up over ``warmup_steps`` optimizer steps, then constant."""
    return base_lr if warmup_steps <= 0 else base_lr * min(1.0, (step + 1) / warmup_steps)


class Trainer:
    """Trains ``config`` into ``run_dir``; ``resume=True`` continues its last checkpoint.

    Writes ``RUN/config.yaml``, ``RUN/metrics.jsonl``, ``RUN/checkpoints/``,
    ``RUN/samples/*.png`` and, at the end, the EMA model as a diffusers pipeline in
    ``RUN/pipeline/`` (``model_index.json``, ``model/``, ``scheduler/``; safetensors).
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: str | os.PathLike,
        resume: bool = False,
        progress: bool = True,
    ) -> None:
        if config.train.precision not in PRECISIONS:
            raise ConfigError(
                f"train.precision={config.train.precision!r}; expected one of {list(PRECISIONS)}"
            )
        if config.train.checkpoint_minutes < 0:
            raise ConfigError(
                f"train.checkpoint_minutes={config.train.checkpoint_minutes}; expected a number "
                ">= 0 (0 turns wall-time checkpoints off)"
            )
        self.config, self.run_dir, self.resume, self.progress = (
            config,
            Path(run_dir),
            resume,
            progress,
        )
        self.dist: DistInfo = init_distributed(config.train.device)
        self.checkpoints = CheckpointManager(self.run_dir, config.train.keep_checkpoints)
        prepare_run_dir(
            self.run_dir, config, resume, self.checkpoints, FROZEN_ON_RESUME, self.dist.is_main
        )

        cfg, device = config, self.dist.device
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        self.dataset = build_data(cfg.data, device)
        self.model = build_model(cfg.model, self.dataset, cfg.objective).to(device)
        self.ema = EMA(self.model, cfg.train.ema_decay)
        self.objective = build_objective(cfg)
        if self.objective.needs_pairs and cfg.data.name not in REFLOW_DATA:
            raise ConfigError(
                f"objective.kind={cfg.objective.kind!r} trains on paired (noise, data) samples, "
                f"but data.name={cfg.data.name!r}: set data.name=pairs data.root=DIR (pairs "
                "written by flowkit reflow) or data.name=teacher data.root=MODEL"
            )
        self.params = list(self.model.parameters())
        self.optimizer = torch.optim.AdamW(
            self.params,
            foreach=True,
            lr=cfg.optim.lr,
            betas=cfg.optim.betas,
            eps=cfg.optim.eps,
            weight_decay=cfg.optim.weight_decay,
        )
        rank_seed = cfg.train.seed * 1_000_003 + self.dist.rank
        self.noise = torch.Generator(device).manual_seed(rank_seed)
        stream = IndexStream(
            len(self.dataset),
            cfg.optim.batch_size,
            cfg.train.seed,
            self.dist.rank,
            self.dist.world_size,
        )
        self.batches = make_batches(self.dataset, stream, device, rank_seed, cfg.data.num_workers)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self.step = 0
        # the logging window: the loss summed since step ``_logged`` (checkpointed with it)
        self._loss_sum, self._logged = torch.zeros((), device=device), 0
        self.timer = CheckpointTimer(cfg.train.checkpoint_minutes)
        self._control = control_group() if self.dist.enabled else None
        if resume:
            self._restore()
        self.forward_model = self._wrap(self.model)

    # -- setup ---------------------------------------------------------------------------
    def _restore(self) -> None:
        latest = self.checkpoints.latest()
        if latest is None:
            return  # nothing saved yet: --resume starts from scratch
        ckpt = self.checkpoints.load(latest, self.model, self.ema.ema_model, self.optimizer)
        mine = restore_rank_state(
            ckpt.state["ranks"], self.dist, self.noise, self.batches, latest
        )
        self.step = ckpt.step
        window = mine.get("log", {"loss_sum": 0.0, "since": self.step})  # older checkpoints
        self._loss_sum.fill_(window["loss_sum"])
        self._logged = int(window["since"])
        if self.dist.is_main:
            self.metrics.truncate_after(self.step)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """xformers / channels-last on GPU, then DDP, then ``torch.compile``."""
        cfg = self.config.train
        accelerate(model, self.dist.device, xformers=cfg.xformers, channels_last=cfg.channels_last)
        if self.dist.enabled:
            device_ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        return torch.compile(model) if cfg.compile else model

    # -- the loop ------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Gather every rank's random state and data position; rank 0 writes. Every rank
        must call it at the same step; returns the checkpoint's folder."""
        window = {"loss_sum": float(self._loss_sum), "since": self._logged}
        state = capture_rank_state(self.noise, self.batches, self.dist, window)
        ranks = gather_rank_states(state, self.dist)
        if self.dist.is_main:
            self.checkpoints.save(
                self.step, self.model, self.ema.ema_model, self.optimizer, {"ranks": ranks}
            )
        barrier()
        self.timer.reset()
        return self.checkpoints.path(self.step)

    def _train_step(self, autocast) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        batch = self.batches.next()
        cond = batch.labels if cfg.model.class_conditional else None
        # a phased objective (Rectified Diffusion's phases) also reads the boundary states
        phased = {"xb": batch.xb} if self.objective.boundaries is not None else {}
        with autocast:
            loss = self.objective(
                self.forward_model, batch.x1, x0=batch.x0, cond=cond, generator=self.noise, **phased
            ).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = None
        if cfg.optim.grad_clip is not None:
            grad_norm = nn.utils.clip_grad_norm_(self.params, cfg.optim.grad_clip)
        lr = warmup_lr(cfg.optim.lr, self.step, cfg.optim.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.ema.update()
        return loss.detach(), grad_norm

    def _check_finite(self) -> None:
        since = self._logged
        if not bool(torch.isfinite(self._loss_sum)):
            latest = self.checkpoints.latest()
            kept = (
                f"the last good checkpoint is {str(latest)!r}"
                if latest
                else "no checkpoint was saved"
            )
            raise NonFiniteLossError(
                f"the loss became NaN or infinite between step {since + 1} and step {self.step}; "
                f"the run stopped and {kept}. Lower optim.lr, set optim.grad_clip, "
                "or check the data."
            )

    def _agree(self, stop: StopSignals) -> tuple[int, bool]:
        """(signal to stop on or 0, whether the wall-time checkpoint is due), the same on
        every rank: one all-reduce of two integers per step under ``torchrun``."""
        flags = [stop.signum or 0, int(self.timer.due())]
        if self.dist.enabled:
            flags = agree(flags, self._control)
        return flags[0], bool(flags[1])

    def fit(self) -> Path:
        """Train to ``train.steps``; return the folder of the saved pipeline.

        Raises:
            TrainingInterrupted: SIGINT or SIGTERM arrived; the step in progress finished
                and was checkpointed (``.step``, ``.checkpoint``). The previous signal
                handlers are back in place.
        """
        cfg = self.config.train
        use_cuda = self.dist.device.type == "cuda"
        autocast = (
            torch.autocast(self.dist.device.type, dtype=torch.bfloat16)
            if cfg.precision == "bf16"
            else nullcontext()
        )
        if use_cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            disable=not (self.progress and self.dist.is_main),
            desc=f"train {count_parameters(self.model) / 1e6:.2f}M params",
        )
        self.model.train()
        with StopSignals() as stop:
            try:
                self._loop(autocast, bar, stop)
            finally:
                bar.close()
            # A signal now has no step to finish: it aborts the final writes (atomic).
            stop.immediate = True
            if self.dist.is_main:
                self.snapshot("final.png")
                self._save_pipeline()
        barrier()
        return self.run_dir / "pipeline"

    def _loop(self, autocast, bar: tqdm, stop: StopSignals) -> None:
        cfg = self.config.train
        grad_norm, tic, timed_from = None, time.perf_counter(), self.step
        self.timer.reset()
        while self.step < cfg.steps:
            loss, grad_norm = self._train_step(autocast)
            self._loss_sum += loss
            self.step += 1
            bar.update(1)
            stop_signal, time_due = self._agree(stop)
            at_log = self.step % cfg.log_every == 0 or self.step == cfg.steps
            at_ckpt = self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps
            at_ckpt = at_ckpt or time_due or bool(stop_signal)
            if at_log or at_ckpt:
                self._check_finite()
            if at_log:
                elapsed = time.perf_counter() - tic
                record = {
                    "step": self.step,
                    "loss": float(self._loss_sum) / (self.step - self._logged),
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "grad_norm": None if grad_norm is None else float(grad_norm),
                    "steps_per_s": (self.step - timed_from) / max(elapsed, 1e-9),
                }
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                if self.dist.is_main:
                    self.metrics.write(record)
                self._loss_sum.zero_()
                self._logged, timed_from, tic = self.step, self.step, time.perf_counter()
            if at_ckpt:
                saved = self.save_checkpoint()
            if stop_signal:
                raise TrainingInterrupted(stop_signal, self.step, saved)
            if cfg.sample_every and self.step % cfg.sample_every == 0 and self.dist.is_main:
                self.snapshot(f"step-{self.step:08d}.png")

    # -- outputs -------------------------------------------------------------------------
    def snapshot(self, name: str) -> Path | None:
        """Samples of the EMA model from fixed noise, as a PNG grid or scatter plot."""
        return write_snapshot(
            self.ema.ema_model,
            self.dataset,
            self.config,
            self.run_dir / "samples" / name,
            self.objective,
        )

    def _save_pipeline(self) -> None:
        """The EMA model in the pipeline its objective declares (``saved_as``)."""
        pipeline = pipeline_of(self.objective, self.ema.ema_model, self.config)
        with atomic_path(self.run_dir / "pipeline", is_dir=True) as tmp:
            pipeline.save_pretrained(tmp)
