"""The flowkit command: help, train then sample, errors with exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from flowkit.cli.main import main

TINY = [
    "--set",
    "data.num_points=2000",
    "--set",
    "model.kwargs={hidden_dim: 32, num_layers: 2}",
    "--set",
    "train.steps=10",
    "--set",
    "train.checkpoint_every=10",
    "--set",
    "train.device=cpu",
    "--set",
    "train.sample_num=32",
    "--set",
    "train.sample_nfe=2",
    "--no-progress",
]
CONFIG = str(Path(__file__).parents[2] / "configs" / "checkerboard.yaml")


def test_help_lists_commands_and_examples() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowkit", "--help"], capture_output=True, text=True, check=True
    )
    assert "train" in done.stdout and "sample" in done.stdout and "examples" in done.stdout
    for command in ("train", "sample"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0


def test_train_then_sample(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", CONFIG, "--out", str(run), *TINY]) == 0
    assert (run / "pipeline" / "model_index.json").is_file()
    capsys.readouterr()
    assert (
        main(
            [
                "sample",
                str(run),
                "--nfe",
                "4",
                "--num",
                "10",
                "--method",
                "heun",
                "--out",
                str(tmp_path / "s.safetensors"),
                "--batch-size",
                "4",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["nfe"] == 4 and report["num"] == 10
    tensors = load_file(tmp_path / "s.safetensors")
    assert tensors["samples"].shape == (10, 2) and tensors["x0"].shape == (10, 2)
    assert (
        main(["sample", str(run), "--nfe", "2", "--num", "50", "--out", str(tmp_path / "s.png")])
        == 0
    )
    assert Image.open(tmp_path / "s.png").size[0] > 100
    assert (
        main(
            [
                "sample",
                str(run / "pipeline"),
                "--nfe",
                "2",
                "--num",
                "5",
                "--out",
                str(tmp_path / "p.safetensors"),
            ]
        )
        == 0
    )


def test_errors_exit_with_code_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", CONFIG, "--out", str(tmp_path), "--set", "optim.lrr=1"]) == 2
    assert "unknown config key 'optim.lrr'" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["sample", str(tmp_path), "--out", str(tmp_path / "x.jpg")]) == 2
    assert "--out must end in .png or .safetensors" in capsys.readouterr().err


def test_sde_samples_do_not_depend_on_the_batch_size(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", CONFIG, "--out", str(run), *TINY]) == 0
    outs = []
    for batch_size in ("1", "6"):
        out = tmp_path / f"b{batch_size}.safetensors"
        assert (
            main(
                [
                    "sample",
                    str(run),
                    "--method",
                    "flow_sde",
                    "--nfe",
                    "10",
                    "--num",
                    "6",
                    "--batch-size",
                    batch_size,
                    "--seed",
                    "3",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        outs.append(load_file(out))
    assert torch.equal(outs[0]["x0"], outs[1]["x0"])
    torch.testing.assert_close(outs[0]["samples"], outs[1]["samples"], rtol=1e-5, atol=1e-6)
