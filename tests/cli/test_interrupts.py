"""Ctrl-C and SIGTERM on the command line: one line saying what was kept and how to go on,
exit code 130 (SIGINT) or 143 (SIGTERM), no traceback, nothing half-written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flowkit.cli import main as cli
from flowkit.models import MLPField
from flowkit.training import Trainer, load_config

ROOT = Path(__file__).parents[2]
CONFIG = str(ROOT / "configs" / "checkerboard.yaml")
TINY = {
    "data.num_points": "2000",
    "model.kwargs": "{hidden_dim: 32, num_layers: 2}",
    "optim.batch_size": "64",
    "train.steps": "12",
    "train.log_every": "1",
    "train.checkpoint_every": "5",
    "train.device": "cpu",
    "train.sample_num": "16",
    "train.sample_nfe": "2",
}
RESUME_LINE = re.compile(
    r"^flowkit train: interrupted at step (\d+); checkpoint saved to (\S+); "
    r"resume with: flowkit train (\S+) --out (\S+) .*--resume$"
)


@pytest.fixture(autouse=True)
def recorded_signals():
    """Handlers that only record SIGINT / SIGTERM: a signal the code under test does not
    handle fails an assertion instead of ending the test session."""
    received: list[int] = []
    previous = {
        s: signal.signal(s, lambda n, f: received.append(n))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    handlers = {s: signal.getsignal(s) for s in previous}
    yield received, handlers
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def main(argv: list[str]) -> int:
    """``flowkit ARGV``; a KeyboardInterrupt that escapes it fails the test (and does not end
    the test session)."""
    try:
        return cli.main(argv)
    except KeyboardInterrupt:
        pytest.fail(f"KeyboardInterrupt escaped 'flowkit {argv[0]}'")


def _args(run: Path, **overrides: str) -> list[str]:
    settings = {**TINY, **overrides}
    sets = [word for key, value in settings.items() for word in ("--set", f"{key}={value}")]
    return ["train", CONFIG, "--out", str(run), *sets, "--no-progress"]


def _one_line(err: str, command: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("flowkit")]
    assert len(lines) == 1 and lines[0].startswith(f"flowkit {command}: interrupted"), err
    return lines[0]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "pipeline" / "model" / "diffusion_pytorch_model.safetensors")


def test_sigint_at_step_7_checkpoints_exits_130_and_resume_is_bitwise(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    recorded_signals,
) -> None:
    received, handlers = recorded_signals
    assert main(_args(tmp_path / "full")) == 0

    original = Trainer._train_step

    def step_then_sigint(self, autocast):
        result = original(self, autocast)
        if self.step + 1 == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(Trainer, "_train_step", step_then_sigint)
    run = tmp_path / "split"
    capsys.readouterr()
    assert main(_args(run)) == 130
    line = _one_line(capsys.readouterr().err, "train")
    match = RESUME_LINE.match(line)
    assert match, line
    checkpoint = run / "checkpoints" / "step-00000007"
    assert match.groups() == ("7", str(checkpoint), CONFIG, str(run))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000005",
        "step-00000007",
    ]
    assert not (run / "pipeline").exists()
    assert received == [] and {s: signal.getsignal(s) for s in handlers} == handlers

    monkeypatch.undo()
    assert main(_args(run)[:-1] + ["--resume", "--no-progress"]) == 0
    full, split = _weights(tmp_path / "full"), _weights(run)
    assert full.keys() == split.keys()
    assert all(torch.equal(full[name], split[name]) for name in full)


class Forked:
    """``flowkit ARGS`` in a process forked from this one, with the interface of the
    :class:`subprocess.Popen` calls below (``poll``, ``send_signal``, ``communicate``,
    ``kill``, ``returncode``): the same command in a real second process, without a fresh
    interpreter importing torch (about 1 s of CPU instead of 8)."""

    def __init__(self, args: list[str], folder: Path) -> None:
        self.err = folder / "forked.stderr"
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            code = 1
            try:
                sys.stderr = sys.__stderr__ = open(self.err, "w", buffering=1)  # noqa: SIM115
                signal.signal(signal.SIGINT, signal.default_int_handler)  # a fresh process's
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                torch.set_num_threads(1)
                code = cli.main(args)
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.communicate(timeout=20)

    def communicate(self, timeout: float = 20) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("forked flowkit", timeout)
            time.sleep(0.02)
        return "", self.err.read_text() if self.err.is_file() else ""


@pytest.mark.parametrize("launcher", [pytest.param("exec", marks=pytest.mark.slow), "fork"])
def test_a_real_process_sent_sigterm_leaves_a_checkpoint_and_says_how_to_resume(
    tmp_path: Path, launcher: str
) -> None:
    """``python -m flowkit train`` in a fresh interpreter (slow), and, as the default suite's
    fast counterpart, the same command in a process forked from this one (same asserts)."""
    run = tmp_path / "run"
    args = _args(run, **{"train.steps": "1000000", "train.checkpoint_every": "1000000"})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if launcher == "fork":
        process = Forked(args, tmp_path)
    else:
        process = subprocess.Popen(
            [sys.executable, "-m", "flowkit", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    metrics = run / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 60
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no training progress within 60 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err[-2000:]
    line = _one_line(err, "train")
    match = RESUME_LINE.match(line)
    assert match, line
    step, checkpoint = int(match.group(1)), Path(match.group(2))
    assert step >= 3 and checkpoint == run / "checkpoints" / f"step-{step:08d}"
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "ema.safetensors",
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    ]
    assert not [p for p in run.rglob(".tmp-*")]
    last = json.loads(metrics.read_text().splitlines()[-1])
    assert last["step"] == step
    overrides = [f"{key}={value}" for key, value in TINY.items()]
    resumed = Trainer(load_config(CONFIG, overrides), run, resume=True, progress=False)
    assert resumed.step == step


def test_keyboard_interrupt_in_reflow_is_one_line_and_the_same_command_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowkit.reflow.generate as generate

    torch.manual_seed(0)
    MLPField(dim=2, hidden_dim=16, num_layers=2).save_pretrained(tmp_path / "teacher")
    write_shard, written = generate.write_shard, []

    def ctrl_c_on_the_second_shard(*args, **kwargs):
        if written:
            raise KeyboardInterrupt
        written.append(write_shard(*args, **kwargs))
        return written[-1]

    monkeypatch.setattr(generate, "write_shard", ctrl_c_on_the_second_shard)
    out = tmp_path / "pairs"
    args = ["reflow", str(tmp_path / "teacher"), "-n", "12", "--out", str(out)]
    args += ["--shard-size", "4", "--batch-size", "4", "--method", "euler", "--nfe", "2"]
    args += ["--no-progress"]
    assert main(args) == 130
    line = _one_line(capsys.readouterr().err, "reflow")
    assert "completed shards are kept" in line and "same command" in line
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".safetensors") == [
        "pairs-00000.safetensors"
    ]
    monkeypatch.undo()
    assert main(args) == 0
    assert len([p for p in out.iterdir() if p.suffix == ".safetensors"]) == 3


@pytest.mark.parametrize(
    ("command", "module", "function", "argv"),
    [
        ("sample", "flowkit.cli.sample", "run", ["MODEL", "--nfe", "2", "--out", "x.png"]),
        ("stats", "flowkit.cli.evaluate", "run_stats", ["digits", "--out", "ref.npz"]),
        ("fid", "flowkit.cli.evaluate", "run_fid", ["x.safetensors", "--ref", "ref.npz"]),
        ("train", "flowkit.cli.train", "run", [CONFIG]),
    ],
)
def test_keyboard_interrupt_in_any_command_is_one_line_and_exit_130(
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    module: str,
    function: str,
    argv: list[str],
) -> None:
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(f"{module}.{function}", interrupted)
    assert main([command, *argv]) == 130
    line = _one_line(capsys.readouterr().err, command)
    assert line.startswith(f"flowkit {command}: interrupted; ")


def test_ctrl_c_before_the_first_checkpoint_says_to_start_again(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ctrl_c(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", ctrl_c)
    run = tmp_path / "run"
    assert main(_args(run)) == 130
    line = _one_line(capsys.readouterr().err, "train")
    assert line.startswith("flowkit train: interrupted before the first checkpoint; ")
    assert f"; start again with: flowkit train {CONFIG} --out {run} --set " in line
    assert "--resume" not in line


def test_a_second_ctrl_c_while_saving_aborts_and_leaves_the_previous_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowkit.training.checkpoint as checkpoint_module
    import flowkit.training.interrupts as interrupts

    original_step, save_file = Trainer._train_step, checkpoint_module.save_file

    def step_then_sigint(self, autocast):
        result = original_step(self, autocast)
        if self.step + 1 == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    def sigint_again_while_saving_step_7(tensors, filename, *args, **kwargs):
        save_file(tensors, filename, *args, **kwargs)
        if "step-00000007" in str(filename):
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(interrupts, "GRACE_S", 0.0)
    monkeypatch.setattr(Trainer, "_train_step", step_then_sigint)
    monkeypatch.setattr(checkpoint_module, "save_file", sigint_again_while_saving_step_7)
    run = tmp_path / "run"
    assert main(_args(run)) == 130
    line = _one_line(capsys.readouterr().err, "train")
    checkpoint = run / "checkpoints" / "step-00000005"
    assert line.startswith(f"flowkit train: interrupted; the last checkpoint is {checkpoint} ")
    assert line.endswith(" --resume") and "resume with: flowkit train " in line
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000005"]
    monkeypatch.undo()
    assert Trainer(load_config(CONFIG, [f"{k}={v}" for k, v in TINY.items()]), run,
                   resume=True, progress=False).step == 5  # fmt: skip
