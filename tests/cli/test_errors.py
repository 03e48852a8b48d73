"""Bad input and failing writes: one ``flowkit COMMAND: error: ...`` line, exit code 2,
nothing half-written left in place, and the file or value named."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path

import pytest
import torch

import flowkit.training.checkpoint as checkpoint_module
from flowkit.cli.main import build_parser, main
from flowkit.models import MLPField

CONFIG = str(Path(__file__).parents[2] / "configs" / "checkerboard.yaml")
TINY = [
    "--set",
    "data.num_points=2000",
    "--set",
    "model.kwargs={hidden_dim: 32, num_layers: 2}",
    "--set",
    "train.steps=10",
    "--set",
    "train.checkpoint_every=5",
    "--set",
    "train.device=cpu",
    "--set",
    "train.sample_num=16",
    "--set",
    "train.sample_nfe=2",
    "--no-progress",
]


def _one_error_line(capsys: pytest.CaptureFixture, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("flowkit")]
    assert len(lines) == 1 and lines[0].startswith(f"flowkit {command}: error: "), err
    return lines[0]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_with_num_accepts_dash_n() -> None:
    with_num = {
        name: sub
        for name, sub in _subcommands().items()
        if any("--num" in a.option_strings for a in sub._actions)
    }
    assert {"sample", "reflow", "stats", "fid"} <= set(with_num)
    for name, sub in with_num.items():
        num = next(a for a in sub._actions if "--num" in a.option_strings)
        assert "-n" in num.option_strings, name


def _train(run: Path, *extra: str) -> int:
    return main(["train", CONFIG, "--out", str(run), *TINY, *extra])


@pytest.mark.parametrize("damage", ["garbage", "pickle", "truncated"])
def test_a_corrupt_checkpoint_on_resume_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture, damage: str
) -> None:
    run = tmp_path / "run"
    assert _train(run, "--set", "train.steps=5") == 0
    weights = run / "checkpoints" / "step-00000005" / "model.safetensors"
    if damage == "garbage":
        weights.write_bytes(b"\xff" * 64)
    elif damage == "pickle":
        torch.save({"w": torch.zeros(3)}, weights)
    else:
        weights.write_bytes(weights.read_bytes()[:100])
    capsys.readouterr()
    assert _train(run, "--resume") == 2
    line = _one_error_line(capsys, "train")
    assert str(weights) in line and "safetensors" in line


def test_malformed_yaml_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  steps: [1, 2\n")
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    line = _one_error_line(capsys, "train")
    assert str(config) in line and "not valid YAML" in line


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_during_training_is_one_line_and_leaves_no_partial_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    monkeypatch.setattr(checkpoint_module, "save_file", _disk_full)
    assert _train(run) == 2
    line = _one_error_line(capsys, "train")
    assert "step-00000005" in line and "disk is full" in line
    assert list((run / "checkpoints").iterdir()) == []  # no half-written checkpoint


def test_disk_full_during_reflow_is_one_line_and_leaves_no_partial_shard(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch

    def rust_disk_full(*args, **kwargs):
        raise safetensors.SafetensorError("Error while serializing: IoError(No space, os error 28)")

    torch.manual_seed(0)
    MLPField(dim=2, hidden_dim=16, num_layers=2).save_pretrained(tmp_path / "teacher")
    monkeypatch.setattr(safetensors.torch, "save_file", rust_disk_full)
    out = tmp_path / "pairs"
    args = ["reflow", str(tmp_path / "teacher"), "-n", "8", "--out", str(out)]
    assert main([*args, "--method", "euler", "--nfe", "2", "--no-progress"]) == 2
    line = _one_error_line(capsys, "reflow")
    assert "pairs-00000.safetensors" in line and "disk is full" in line
    assert not any(p.suffix == ".safetensors" for p in out.iterdir())


def test_sample_to_an_unwritable_place_names_out_not_a_temporary(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch

    torch.manual_seed(0)
    MLPField(dim=2, hidden_dim=16, num_layers=2).save_pretrained(tmp_path / "model")

    def denied(tensors, filename, metadata=None):
        raise PermissionError(errno.EACCES, "Permission denied", str(filename))

    monkeypatch.setattr(safetensors.torch, "save_file", denied)
    out = tmp_path / "out" / "s.safetensors"
    args = ["sample", str(tmp_path / "model"), "--nfe", "2", "-n", "4", "--out", str(out)]
    assert main(args) == 2
    line = _one_error_line(capsys, "sample")
    assert f"could not write {str(out)!r}" in line and "permission" in line
    assert ".tmp" not in line and list(out.parent.iterdir()) == []


def test_sample_into_a_file_that_is_not_a_folder_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.manual_seed(0)
    MLPField(dim=2, hidden_dim=16, num_layers=2).save_pretrained(tmp_path / "model")
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "s.png"
    assert main(["sample", str(tmp_path / "model"), "--nfe", "2", "--out", str(out)]) == 2
    line = _one_error_line(capsys, "sample")
    assert str(tmp_path / "file") in line


def test_a_non_finite_loss_is_one_line_that_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--set", "optim.lr=1e30", "--set", "optim.warmup_steps=0"]
    assert _train(tmp_path / "run", *args) == 2
    line = _one_error_line(capsys, "train")
    assert "NaN or infinite" in line and "optim.lr" in line


def test_reflow_into_another_teachers_pairs_without_manifest_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        MLPField(dim=2, hidden_dim=16, num_layers=2).save_pretrained(tmp_path / name)
    out = tmp_path / "pairs"
    args = ["-n", "12", "--shard-size", "4", "--method", "euler", "--nfe", "2", "--no-progress"]
    assert main(["reflow", str(tmp_path / "a"), "--out", str(out), *args]) == 0
    (out / "manifest.json").unlink()
    (out / "pairs-00002.safetensors").unlink()  # as if killed before the last shard
    before = sorted(p.read_bytes() for p in out.iterdir())
    capsys.readouterr()
    assert main(["reflow", str(tmp_path / "b"), "--out", str(out), *args]) == 2
    line = _one_error_line(capsys, "reflow")
    assert "pairs-00000.safetensors" in line and "teacher_digest" in line
    assert sorted(p.read_bytes() for p in out.iterdir()) == before  # nothing written
    assert main(["reflow", str(tmp_path / "a"), "--out", str(out), *args]) == 0  # same teacher


def test_fid_of_a_file_that_is_not_safetensors_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import numpy as np

    ref = tmp_path / "ref.npz"
    np.savez(ref, mu=np.zeros(4), sigma=np.eye(4))
    bad = tmp_path / "samples.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    assert main(["fid", str(bad), "--ref", str(ref), "--no-progress"]) == 2
    line = _one_error_line(capsys, "fid")
    assert str(bad) in line and "not a valid safetensors file" in line
