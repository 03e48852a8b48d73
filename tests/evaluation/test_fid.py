"""FID end to end: sources split across ranks, reference files, the stats and fid commands."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from flowkit.cli.main import main
from flowkit.data import load_digits
from flowkit.evaluation.fid import auto_features, fid
from flowkit.evaluation.sources import iter_data, rank_indices
from flowkit.evaluation.stats import load_stats
from flowkit.models import unet


def test_rank_indices_partition_the_set() -> None:
    parts = [rank_indices(10, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == list(range(10))


def test_safetensors_source_streams_the_requested_rows(tmp_path: Path) -> None:
    samples = torch.arange(40.0).reshape(10, 1, 2, 2)
    save_file({"samples": samples}, tmp_path / "s.safetensors")
    rows = torch.cat(list(iter_data(tmp_path / "s.safetensors", rank_indices(10, 1, 2), 2)))
    torch.testing.assert_close(rows, samples[1::2])


def test_auto_features() -> None:
    assert auto_features((1, 8, 8)) == "digits"
    assert auto_features((1, 28, 28)) == "mnist"
    assert auto_features((3, 32, 32)) == "inception"


@pytest.fixture(scope="module")
def digits_ref(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("refs") / "digits.npz"
    assert main(["stats", "digits", "--out", str(out), "--no-progress"]) == 0
    return out


def test_stats_command_writes_a_reference(digits_ref: Path) -> None:
    ref = load_stats(digits_ref)
    assert ref.extractor == "digits" and ref.count == 1797


def test_fid_of_real_digits_is_small_and_of_noise_large(
    tmp_path: Path, digits_ref: Path, capsys: pytest.CaptureFixture
) -> None:
    x, _ = load_digits()
    save_file({"samples": x[::2].contiguous()}, tmp_path / "real.safetensors")
    noise = torch.rand(900, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    save_file({"samples": noise}, tmp_path / "noise.safetensors")
    with pytest.warns(UserWarning, match="the standard is 50000"):
        real = fid(tmp_path / "real.safetensors", digits_ref, progress=False)
        far = fid(tmp_path / "noise.safetensors", digits_ref, progress=False)
    assert real.features == "digits" and real.num == 899 and real.nfe is None
    assert far.fid > 20 * real.fid, (real.fid, far.fid)
    assert (
        main(
            [
                "fid",
                str(tmp_path / "real.safetensors"),
                "--ref",
                str(digits_ref),
                "--json",
                str(tmp_path / "r.json"),
                "--no-progress",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads((tmp_path / "r.json").read_text())
    assert printed["fid"] == pytest.approx(real.fid, rel=1e-9)


def test_fid_of_a_model_drawn_on_the_fly(
    tmp_path: Path, digits_ref: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.manual_seed(0)
    unet("tiny").save_pretrained(tmp_path / "model")
    assert (
        main(
            [
                "fid",
                str(tmp_path / "model"),
                "--nfe",
                "2",
                "--num",
                "40",
                "--batch-size",
                "16",
                "--ref",
                str(digits_ref),
                "--no-progress",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["nfe"] == 2 and result["num"] == 40 and result["features"] == "digits"
    assert result["fid"] > 0 and result["seconds"] > 0


def test_fid_errors_are_named(
    tmp_path: Path, digits_ref: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.manual_seed(0)
    unet("tiny").save_pretrained(tmp_path / "model")
    assert main(["fid", str(tmp_path / "model"), "--ref", str(digits_ref)]) == 2
    assert "needs --num, and --nfe unless adaptive" in capsys.readouterr().err
    assert main(["fid", str(tmp_path / "nowhere"), "--ref", str(digits_ref)]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["fid", str(tmp_path / "model"), "--ref", str(tmp_path / "no.npz")]) == 2
    assert "no.npz" in capsys.readouterr().err


# Each two-process test runs under torchrun (slow: the launcher and each rank import torch
# afresh) and, as the default suite's fast counterpart, in two ranks forked from this process
# with torchrun's environment (the fork_ranks fixture); the asserts are the same.
LAUNCHERS = [pytest.param("torchrun", marks=pytest.mark.slow), "fork"]


def two_ranks_fid(launcher: str, args: list[str], fork_ranks, tmp_path: Path) -> dict:
    """``flowkit fid ARGS`` in two ranks; the result rank 0 reports."""
    if launcher == "fork":
        out = tmp_path / "two-ranks.json"
        fork_ranks(lambda rank: main([*args, "--json", str(out)]))
        return json.loads(out.read_text())
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", "-m", "flowkit", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_two_processes_give_the_fid_of_one(
    tmp_path: Path, digits_ref: Path, capsys: pytest.CaptureFixture, launcher: str, fork_ranks
) -> None:
    x, _ = load_digits()
    save_file({"samples": x[1::2].contiguous()}, tmp_path / "s.safetensors")
    assert (
        main(["fid", str(tmp_path / "s.safetensors"), "--ref", str(digits_ref), "--no-progress"])
        == 0
    )
    single = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    args = ["fid", str(tmp_path / "s.safetensors"), "--ref", str(digits_ref)]
    double = two_ranks_fid(
        launcher, [*args, "--device", "cpu", "--no-progress"], fork_ranks, tmp_path
    )
    assert double["num"] == single["num"] == 898
    assert double["fid"] == pytest.approx(single["fid"], rel=1e-9)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_torchrun_fid_of_a_model_with_dash_n_equals_one_process(
    tmp_path: Path, digits_ref: Path, capsys: pytest.CaptureFixture, launcher: str, fork_ranks
) -> None:
    """The README's form ``torchrun ... -m flowkit fid MODEL --nfe N -n N`` runs, and two
    processes score exactly what one does (sample i depends on (seed, i) alone)."""
    torch.manual_seed(0)
    unet("tiny").save_pretrained(tmp_path / "model")
    args = ["fid", str(tmp_path / "model"), "--nfe", "2", "-n", "24", "--ref", str(digits_ref)]
    assert main([*args, "--batch-size", "5", "--no-progress", "--device", "cpu"]) == 0
    single = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    double = two_ranks_fid(
        launcher, [*args, "--no-progress", "--device", "cpu"], fork_ranks, tmp_path
    )
    assert double["num"] == single["num"] == 24
    assert double["fid"] == pytest.approx(single["fid"], rel=1e-9)
