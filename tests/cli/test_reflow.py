"""``flowkit reflow``: the command, and two torchrun processes writing the same pairs as one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flowkit.cli.main import main
from flowkit.models import MLPField


@pytest.fixture
def teacher_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    folder = tmp_path / "teacher"
    MLPField(dim=2, hidden_dim=16, num_layers=2).save_pretrained(folder)
    return folder


ARGS = ["--num", "21", "--batch-size", "4", "--shard-size", "6", "--method", "rk4", "--nfe", "8"]


def test_reflow_writes_a_complete_manifest(teacher_dir, tmp_path, capsys):
    assert main(["reflow", str(teacher_dir), "--out", str(tmp_path / "p"), *ARGS]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["num"] == 21 and report["shards"] == 4 and report["nfe_per_pair"] == 8
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["solver"]["method"] == "rk4"
    assert manifest["teacher"] == str(teacher_dir)


def test_fixed_step_method_needs_nfe(teacher_dir, tmp_path, capsys):
    code = main(
        ["reflow", str(teacher_dir), "--num", "4", "--out", str(tmp_path), "--method", "rk4"]
    )
    assert code == 2 and "--nfe" in capsys.readouterr().err


@pytest.mark.parametrize("launcher", [pytest.param("torchrun", marks=pytest.mark.slow), "fork"])
def test_two_processes_write_the_same_pairs_as_one(teacher_dir, tmp_path, launcher, fork_ranks):
    """Under ``torchrun`` (slow), and in two ranks forked from this process with torchrun's
    environment (the default suite's fast counterpart; same command, same asserts)."""
    assert main(["reflow", str(teacher_dir), "--out", str(tmp_path / "one"), *ARGS]) == 0
    if launcher == "fork":
        two = ["reflow", str(teacher_dir), "--out", str(tmp_path / "two"), "--no-progress", *ARGS]
        fork_ranks(lambda rank: main(two))
    else:
        launch_two(teacher_dir, tmp_path)
    one = json.loads((tmp_path / "one" / "manifest.json").read_text())
    two = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert one["shards"] == two["shards"]  # same files, row ranges and checksums
    for record in one["shards"]:
        a = load_file(tmp_path / "one" / record["file"])
        b = load_file(tmp_path / "two" / record["file"])
        assert all(torch.equal(a[k], b[k]) for k in a)


def launch_two(teacher_dir, tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "flowkit",
        "reflow",
        str(teacher_dir),
        "--out",
        str(tmp_path / "two"),
        "--no-progress",
        "-n",  # torchrun would take --num for its own --numa-binding
        *ARGS[1:],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
