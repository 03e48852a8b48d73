"""``LoadedModel.sample(method="dmcmc")`` (persistent chains, output ``i`` from ``(seed, i)``
whatever the batches), ``flowkit fid --method dmcmc`` and ``load_pipeline`` of a
``DMCMCPipeline``."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from flowkit.cli.main import main
from flowkit.loading import load
from flowkit.models import unet
from flowkit.models.mlp import MLPField
from flowkit.pipelines.dmcmc import DMCMCPipeline, DMCMCScheduler
from flowkit.pipelines.loading import load_pipeline

OPTIONS = dict(chains=3, skip=2, burn_in=1, num_levels=8, s_min=0.05, s_max=10.0)


def test_loaded_model_dmcmc_does_not_depend_on_batches(tmp_path) -> None:
    torch.manual_seed(0)
    MLPField(dim=2, hidden_dim=16, prediction="velocity", path="rectified").save_pretrained(
        tmp_path / "m"
    )
    whole = load(tmp_path / "m").sample(range(7), 3, 4, "dmcmc", **OPTIONS)
    assert whole.x.shape == (7, 2) and whole.nfe == whole.chain_nfe + whole.integrator_nfe
    model = load(tmp_path / "m")
    parts = [model.sample(ids, 3, 4, "dmcmc", **OPTIONS).x for ids in ([0, 2], [4, 5, 6])]
    again = model.sample([1, 3], 3, 4, "dmcmc", **OPTIONS).x  # rounds dropped: replayed
    torch.testing.assert_close(torch.cat(parts), whole.x[[0, 2, 4, 5, 6]])
    torch.testing.assert_close(again, whole.x[[1, 3]])


def test_fid_of_a_model_sampled_by_dmcmc(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    unet("tiny").save_pretrained(tmp_path / "model")
    save_file({"samples": torch.rand(32, 1, 8, 8) * 2 - 1}, tmp_path / "ref.safetensors")
    ref = tmp_path / "ref.npz"
    assert main(["stats", str(tmp_path / "ref.safetensors"), "--out", str(ref),
                 "--features", "digits", "--no-progress"]) == 0  # fmt: skip
    argv = ["fid", str(tmp_path / "model"), "--method", "dmcmc", "--nfe", "3", "--skip", "1",
            "--chains", "4", "--burn-in", "1", "--levels", "8", "--s-min", "0.05", "--s-max",
            "10", "--num", "10", "--batch-size", "3", "--ref", str(ref),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["num"] == 10 and result["features"] == "digits"
    assert 2 <= result["nfe"] <= 3 and result["fid"] > 0  # counted: 1 chain step + integrator


def test_load_pipeline_reads_a_dmcmc_pipeline(tmp_path) -> None:
    torch.manual_seed(0)
    model = MLPField(dim=2, hidden_dim=16, prediction="velocity")
    scheduler = DMCMCScheduler(
        num_levels=8, s_min=0.05, s_max=10.0, num_chains=3, burn_in=1, skip=2
    )
    DMCMCPipeline(model=model, scheduler=scheduler).save_pretrained(tmp_path / "p")
    pipe = load_pipeline(tmp_path / "p")
    assert isinstance(pipe, DMCMCPipeline) and pipe.estimator is None
    first = pipe(batch_size=4, nfe=4, seed=1).samples
    torch.testing.assert_close(first, DMCMCPipeline.from_pretrained(tmp_path / "p")(
        batch_size=4, nfe=4, seed=1).samples)  # fmt: skip
