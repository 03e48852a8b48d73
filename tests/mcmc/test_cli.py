"""``flowkit sample MODEL --method dmcmc``: samples, its accounting, and clear errors."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from flowkit.cli.main import main
from flowkit.mcmc import NoiseLevelClassifier
from flowkit.models.mlp import MLPField
from flowkit.pipelines.dmcmc import DMCMCPipeline, DMCMCScheduler


def _saved(tmp_path):
    torch.manual_seed(0)
    model = MLPField(dim=2, hidden_dim=16, prediction="velocity")
    pipe = DMCMCPipeline(model=model, scheduler=DMCMCScheduler())
    pipe.save_pretrained(tmp_path / "model")
    NoiseLevelClassifier((2,), num_levels=10, s_min=0.1, s_max=10.0, hidden=8).save_pretrained(
        tmp_path / "estimator"
    )
    return tmp_path / "model"


def test_sample_dmcmc(tmp_path, capsys) -> None:
    model = _saved(tmp_path)
    out = tmp_path / "s.safetensors"
    argv = ["sample", str(model), "--method", "dmcmc", "--nfe", "6", "--skip", "2", "--num",
            "10", "--chains", "4", "--burn-in", "2", "--levels", "10", "--s-min", "0.1",
            "--s-max", "10", "--out", str(out),
            "--estimator", str(tmp_path / "estimator")]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["nfe"] == report["chain_nfe"] + report["integrator_nfe"] <= 6
    assert report["chain_nfe"] == 2 and report["estimator_calls"] == 2
    assert load_file(out)["samples"].shape == (10, 2)
    split = tmp_path / "split.safetensors"
    assert main([*argv[:-3], str(split), *argv[-2:], "--batch-size", "2"]) == 0
    torch.testing.assert_close(load_file(split)["samples"], load_file(out)["samples"],
                               rtol=1e-4, atol=1e-5)  # fmt: skip


def test_dmcmc_errors_name_the_value(tmp_path, capsys) -> None:
    model = _saved(tmp_path)
    base = ["sample", str(model), "--method", "dmcmc", "--num", "4", "--chains", "4",
            "--out", str(tmp_path / "x.safetensors")]  # fmt: skip
    assert main([*base, "--nfe", "3", "--skip", "3"]) == 2
    assert "nfe=3 is below one round" in capsys.readouterr().err
    assert main([*base, "--nfe", "8", "--estimator", str(tmp_path / "estimator")]) == 2
    assert "num_levels=10" in capsys.readouterr().err  # trained for another grid
