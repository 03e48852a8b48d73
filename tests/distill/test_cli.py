"""``flowkit distill``: --help without torch, a run end to end (then ``flowkit sample`` on it at
one step), and Ctrl-C: checkpoint, exit 130, the resume command."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowkit.models import MLPField

PROBE = """
import argparse, sys
import flowkit.cli.distill as command
parser = argparse.ArgumentParser(prog="flowkit")
command.add_parser(parser.add_subparsers())
try:
    parser.parse_args(["distill", "--help"])
except SystemExit as done:
    assert done.code == 0
print("imported:" + ",".join(m for m in ("torch", "diffusers", "numpy") if m in sys.modules))
"""


def test_help_imports_no_torch() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "examples" in done.stdout and "--resume" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "imported:"


def _parse(argv: list[str]) -> argparse.Namespace:
    from flowkit.cli import distill

    parser = argparse.ArgumentParser(prog="flowkit")
    distill.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["distill", *argv])


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    MLPField(dim=2, hidden_dim=16, num_layers=1).save_pretrained(tmp_path / "teacher")
    file = tmp_path / "tiny.yaml"
    file.write_text(
        f"teacher: {{source: {tmp_path / 'teacher'}}}\n"
        "distill: {divergence: forward_kl, head_hidden: 8}\n"
        "data: {name: 8gaussians, num_points: 500}\n"
        "optim: {batch_size: 32}\n"
        "train: {steps: 4, log_every: 2, checkpoint_every: 2, sample_num: 16, device: cpu}\n"
    )
    return file


def test_distill_then_sample_one_step(config: Path, tmp_path: Path) -> None:
    from flowkit.cli.main import main

    run = tmp_path / "run"
    assert (
        _parse([str(config), "--out", str(run), "--no-progress"]).run(
            _parse([str(config), "--out", str(run), "--no-progress"])
        )
        == 0
    )
    assert (run / "pipeline" / "model_index.json").is_file()
    assert (run / "samples" / "final.png").is_file()
    out = tmp_path / "samples.safetensors"
    assert main(["sample", str(run), "--nfe", "1", "--num", "8", "--out", str(out)]) == 0
    assert out.is_file()


def test_ctrl_c_checkpoints_and_prints_the_resume_command(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowkit.distill.trainer import DistillTrainer

    original = DistillTrainer.train_step

    def step_then_signal(self, autocast=None):
        stats = original(self, autocast)
        if self.step == 0:
            os.kill(os.getpid(), signal.SIGINT)  # arrives during step 1
        return stats

    monkeypatch.setattr(DistillTrainer, "train_step", step_then_signal)
    run = tmp_path / "run"
    args = _parse([str(config), "--out", str(run), "--no-progress"])
    assert args.run(args) == 130
    err = capsys.readouterr().err
    assert "interrupted at step 1" in err and "--resume" in err
    assert (run / "checkpoints" / "step-00000001").is_dir()
    assert not (run / "pipeline").exists()
    monkeypatch.setattr(DistillTrainer, "train_step", original)
    args = _parse([str(config), "--out", str(run), "--no-progress", "--resume"])
    assert args.run(args) == 0 and (run / "pipeline").is_dir()
