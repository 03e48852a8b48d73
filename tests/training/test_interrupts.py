"""Interrupts keep work: SIGINT / SIGTERM finish the step, checkpoint and stop; wall-time
checkpoints; a run stopped at any step resumes bitwise; ranks agree under torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flowkit.training import Trainer, load_config
from flowkit.training.config import ConfigError
from flowkit.training.interrupts import (
    GRACE_S,
    CheckpointTimer,
    Interrupted,
    StopSignals,
    TrainingInterrupted,
)

SMALL = [
    "data.name=checkerboard",
    "data.num_points=2000",
    "model.kind=mlp",
    "model.kwargs={hidden_dim: 32, num_layers: 2}",
    "optim.batch_size=64",
    "optim.lr=1e-3",
    "optim.warmup_steps=5",
    "train.steps=20",
    "train.log_every=5",
    "train.checkpoint_every=10",
    "train.keep_checkpoints=10",
    "train.sample_num=16",
    "train.sample_nfe=2",
    "train.device=cpu",
]


@pytest.fixture(autouse=True)
def recorded_signals():
    """Handlers that only record SIGINT / SIGTERM, so a signal the code under test fails to
    catch shows up as a failed assertion instead of ending the test session."""
    received: list[int] = []
    previous = {
        s: signal.signal(s, lambda n, f: received.append(n))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    handlers = {s: signal.getsignal(s) for s in previous}
    yield received, handlers
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _trainer(run: Path, *overrides: str, resume: bool = False) -> Trainer:
    return Trainer(load_config(None, SMALL + list(overrides)), run, resume=resume, progress=False)


def _signal_after(trainer: Trainer, step: int, signum: int = signal.SIGINT) -> None:
    """Make the process send itself ``signum`` in the middle of step ``step`` (after its
    batch and loss, before the loop sees the step as done)."""
    original = trainer._train_step

    def step_then_signal(autocast):
        result = original(autocast)
        if trainer.step + 1 == step:
            os.kill(os.getpid(), signum)
        return result

    trainer._train_step = step_then_signal


def _checkpoints(run: Path) -> list[int]:
    return sorted(int(p.name[5:]) for p in (run / "checkpoints").iterdir())


def _final_state(run: Path) -> dict[str, torch.Tensor]:
    """The EMA pipeline weights and the last checkpoint's model and optimizer tensors."""
    last = run / "checkpoints" / "step-00000020"
    state = load_file(run / "pipeline" / "model" / "diffusion_pytorch_model.safetensors")
    for name in ("model", "optimizer"):
        state.update({f"{name}.{k}": v for k, v in load_file(last / f"{name}.safetensors").items()})
    return state


def _losses(run: Path) -> list[tuple[int, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run, threads = tmp_path_factory.mktemp("uninterrupted"), torch.get_num_threads()
    torch.set_num_threads(1)  # as in every test (conftest): the same arithmetic
    try:
        _trainer(run).fit()
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.mark.parametrize(("stop_at", "signum"), [(3, signal.SIGINT), (13, signal.SIGTERM)])
def test_a_signal_stops_after_the_step_and_resume_is_bitwise(
    tmp_path: Path, uninterrupted: Path, recorded_signals, stop_at: int, signum: int
) -> None:
    received, handlers = recorded_signals
    trainer = _trainer(tmp_path)
    _signal_after(trainer, stop_at, signum)
    with pytest.raises(TrainingInterrupted) as stopped:
        trainer.fit()
    assert stopped.value.step == trainer.step == stop_at
    assert stopped.value.exit_code == 128 + signum
    assert stopped.value.checkpoint == tmp_path / "checkpoints" / f"step-{stop_at:08d}"
    assert _checkpoints(tmp_path) == [s for s in (10,) if s < stop_at] + [stop_at]
    assert not (tmp_path / "pipeline").exists()
    assert received == [] and {s: signal.getsignal(s) for s in handlers} == handlers

    resumed = _trainer(tmp_path, resume=True)
    assert resumed.step == stop_at
    resumed.fit()
    full, split = _final_state(uninterrupted), _final_state(tmp_path)
    assert full.keys() == split.keys()
    for name in full:
        assert torch.equal(full[name], split[name]), name
    # the logging window is checkpointed too: the metrics read as one uninterrupted run
    assert _losses(tmp_path) == _losses(uninterrupted)


def test_a_signal_at_the_last_step_still_checkpoints_and_resume_writes_the_pipeline(
    tmp_path: Path,
) -> None:
    trainer = _trainer(tmp_path, "train.steps=6")
    _signal_after(trainer, 6)
    with pytest.raises(TrainingInterrupted, match="step 6"):
        trainer.fit()
    assert _checkpoints(tmp_path) == [6]
    _trainer(tmp_path, "train.steps=6", resume=True).fit()
    assert (tmp_path / "pipeline" / "model_index.json").is_file()


def test_wall_time_checkpoints(tmp_path: Path) -> None:
    """With a clock at one minute per step and train.checkpoint_minutes=3, checkpoints come
    three minutes after the previous one, whether that was timed or every 5 steps."""
    trainer = _trainer(tmp_path / "a", "train.steps=12", "train.checkpoint_every=5",
                       "train.checkpoint_minutes=3")  # fmt: skip
    trainer.timer.clock = lambda: 60.0 * trainer.step
    trainer.fit()
    assert _checkpoints(tmp_path / "a") == [3, 5, 8, 10, 12]

    off = _trainer(tmp_path / "b", "train.steps=12", "train.checkpoint_every=5",
                   "train.checkpoint_minutes=0")  # fmt: skip
    off.timer.clock = lambda: 60.0 * off.step
    off.fit()
    assert _checkpoints(tmp_path / "b") == [5, 10, 12]


def test_tiny_checkpoint_minutes_checkpoint_on_the_real_clock(tmp_path: Path) -> None:
    _trainer(tmp_path, "train.steps=4", "train.checkpoint_every=1000",
             "train.checkpoint_minutes=1e-9").fit()  # fmt: skip
    assert _checkpoints(tmp_path) == [1, 2, 3, 4]


def test_checkpoint_minutes_is_checked(tmp_path: Path) -> None:
    assert load_config(None).train.checkpoint_minutes == 10.0
    with pytest.raises(ConfigError, match="train.checkpoint_minutes"):
        _trainer(tmp_path, "train.checkpoint_minutes=-1")
    with pytest.raises(ConfigError, match="train.checkpoint_minutes"):
        load_config(None, ["train.checkpoint_minutes=soon"])


def test_stop_signals_record_the_first_and_abort_on_a_later_second_sigint() -> None:
    now = [100.0]
    with StopSignals(clock=lambda: now[0]) as stop:
        assert signal.getsignal(signal.SIGINT) == stop._handle
        signal.raise_signal(signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        signal.raise_signal(signal.SIGINT)  # within the grace period: the same request
        now[0] += GRACE_S
        signal.raise_signal(signal.SIGTERM)  # a repeated SIGTERM never aborts
        assert stop.signum == signal.SIGTERM
        with pytest.raises(Interrupted) as aborted:
            signal.raise_signal(signal.SIGINT)
        assert aborted.value.exit_code == 130
    with StopSignals() as stop:
        stop.immediate = True
        with pytest.raises(Interrupted) as aborted:
            signal.raise_signal(signal.SIGTERM)
        assert aborted.value.exit_code == 143


def test_stop_signals_outside_the_main_thread_install_nothing(recorded_signals) -> None:
    _, handlers = recorded_signals
    seen = []

    def enter() -> None:
        with StopSignals():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert seen == [handlers[signal.SIGINT]]


def test_checkpoint_timer() -> None:
    now = [0.0]
    timer = CheckpointTimer(0.5, clock=lambda: now[0])
    now[0] = 29.0
    assert not timer.due()
    now[0] = 30.0
    assert timer.due()
    timer.reset()
    assert not timer.due()
    assert not CheckpointTimer(0.0, clock=lambda: 1e9).due()
    with pytest.raises(ValueError, match="checkpoint_minutes"):
        CheckpointTimer(-1.0)


WORKER = Path(__file__).with_name("ddp_interrupt_worker.py")


@pytest.mark.parametrize("launcher", [pytest.param("torchrun", marks=pytest.mark.slow), "fork"])
def test_ranks_agree_to_stop_and_to_checkpoint_by_time(
    tmp_path: Path, launcher: str, fork_ranks
) -> None:
    """Only rank 1 gets SIGINT (at step 7), only rank 0's clock says a checkpoint is due:
    both ranks checkpoint and stop at the same steps (no hang), and the resumed run ends
    bitwise equal to an uninterrupted one on both ranks. The worker runs under torchrun
    (slow) and, as the default suite's fast counterpart, in two ranks forked from this
    process with torchrun's environment (same asserts)."""
    overrides = [
        "data.name=checkerboard",
        "data.num_points=1000",
        "model.kind=mlp",
        "model.kwargs={hidden_dim: 32, num_layers: 2}",
        "optim.batch_size=32",
        "train.steps=12",
        "train.checkpoint_every=5",
        "train.checkpoint_minutes=2",
        "train.keep_checkpoints=10",
        "train.sample_num=16",
        "train.sample_nfe=2",
        "train.device=cpu",
    ]
    if launcher == "fork":
        fork_ranks(WORKER, [tmp_path, *overrides], timeout=240)
    else:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node=2", str(WORKER), str(tmp_path), *overrides]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert seen["stopped"] == {"step": 7, "exit_code": 130, "checkpoint": "step-00000007"}
        assert seen["checkpoints"] == [2, 4, 5, 7]  # timed (rank 0's clock), every 5, stop
        assert seen["resumed_from"] == 7 and seen["equal"] is True
