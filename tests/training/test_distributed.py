"""Data-parallel training under torchrun (gloo, CPU): ranks end with identical weights."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_process_training_keeps_ranks_identical(tmp_path: Path) -> None:
    overrides = [
        "data.name=checkerboard",
        "data.num_points=1000",
        "model.kind=mlp",
        "model.kwargs={hidden_dim: 32, num_layers: 2}",
        "optim.batch_size=32",
        "train.steps=12",
        "train.checkpoint_every=6",
        "train.device=cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(WORKER),
        str(tmp_path),
        *overrides,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = load_file(tmp_path / "rank0.safetensors")
    rank1 = load_file(tmp_path / "rank1.safetensors")
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    # The checkpoint rank 0 wrote holds the weights every rank ended with.
    saved = load_file(tmp_path / "checkpoints" / "step-00000012" / "model.safetensors")
    assert all(torch.equal(saved[k], rank0[k]) for k in saved)
    state = (tmp_path / "checkpoints" / "step-00000012" / "state.json").read_text()
    assert state.count('"noise"') == 2  # both ranks' random states are checkpointed
