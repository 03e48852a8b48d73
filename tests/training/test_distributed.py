"""Data-parallel training under torchrun (gloo, CPU): ranks end with identical weights.

The worker runs under ``torchrun`` (slow: the launcher and each rank import torch afresh)
and, as the default suite's fast counterpart, in ranks forked from the test process with
torchrun's environment (the ``fork_ranks`` fixture); the asserts are the same.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.parametrize("launcher", [pytest.param("torchrun", marks=pytest.mark.slow), "fork"])
def test_two_process_training_keeps_ranks_identical(
    tmp_path: Path, launcher: str, fork_ranks
) -> None:
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
    if launcher == "fork":
        fork_ranks(WORKER, [tmp_path, *overrides])
    else:
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


def test_cpu_threads_leave_room_and_say_why(monkeypatch) -> None:
    from flowkit.distributed import cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(2)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert cpu_threads() == (1, "half of 2 cores over 1 process(es)")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cpu_threads()[0] == 4
    assert cpu_threads(3) == (3, "as requested")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads()[1] == "from OMP_NUM_THREADS"
    import pytest

    with pytest.raises(ValueError, match="--threads must be >= 1, got 0"):
        cpu_threads(0)
