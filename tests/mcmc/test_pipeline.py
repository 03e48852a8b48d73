"""DMCMCPipeline: save/load round trip with identical samples; flowkit.load reads its model."""

from __future__ import annotations

import json

import pytest
import torch

from flowkit.mcmc import NoiseLevelClassifier
from flowkit.models.mlp import MLPField
from flowkit.pipelines.dmcmc import DMCMCPipeline, DMCMCScheduler


def _pipeline(estimator: bool) -> DMCMCPipeline:
    torch.manual_seed(0)
    model = MLPField(dim=2, hidden_dim=16, prediction="velocity")
    scheduler = DMCMCScheduler(num_levels=20, s_min=0.1, s_max=20.0, skip=2, num_chains=4,
                               burn_in=2, warm_start_nfe=3)  # fmt: skip
    classifier = (NoiseLevelClassifier((2,), num_levels=20, s_min=0.1, s_max=20.0, hidden=8)
                  if estimator else None)  # fmt: skip
    return DMCMCPipeline(model=model, scheduler=scheduler, estimator=classifier)


@pytest.mark.parametrize("estimator", [False, True], ids=["score_norm", "classifier"])
def test_save_load_identical_samples(tmp_path, estimator: bool) -> None:
    pipe = _pipeline(estimator)
    first = pipe(batch_size=6, nfe=6, seed=5)
    pipe.save_pretrained(tmp_path / "dmcmc")
    index = json.loads((tmp_path / "dmcmc" / "model_index.json").read_text())
    assert index["_class_name"] == "DMCMCPipeline"
    loaded = DMCMCPipeline.from_pretrained(tmp_path / "dmcmc")
    again = loaded(batch_size=6, nfe=6, seed=5)
    assert torch.equal(first.samples, again.samples)
    # chains in batches of 3: the same chains (a network's matmul may round differently)
    split = loaded(batch_size=6, nfe=6, seed=5, chain_batch_size=3)
    torch.testing.assert_close(split.samples, first.samples, rtol=1e-4, atol=1e-5)
    assert first.nfe == again.nfe == first.chain_nfe + first.integrator_nfe <= 6
    assert (first.estimator_calls > 0) == estimator
    assert (loaded.estimator is None) == (not estimator)


def test_flowkit_load_reads_the_model(tmp_path) -> None:
    from flowkit.loading import load

    pipe = _pipeline(False)
    pipe.save_pretrained(tmp_path / "dmcmc")
    loaded = load(tmp_path / "dmcmc")
    assert loaded.path.name == "rectified" and loaded.sample_shape == (2,)


def test_estimator_for_another_grid_is_refused() -> None:
    pipe = _pipeline(True)
    pipe.scheduler = DMCMCScheduler(num_levels=30, s_min=0.1, s_max=20.0, num_chains=4)
    with pytest.raises(ValueError, match="num_levels=20"):
        pipe(batch_size=2, nfe=8)
