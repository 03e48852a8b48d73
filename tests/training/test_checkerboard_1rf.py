"""End to end: a 1-rectified flow on the 2-D checkerboard.

With many steps it reproduces the data up to the data's own sampling noise; with one
Euler step it cannot (its paths are curved) — the reason reflow exists. Measured with
this test's settings (seeds fixed, one CPU thread): sliced Wasserstein to held-out data
0.038 at 100 NFE against a noise floor of 0.021 between two data draws, 0.50 at 1 NFE.
"""

from pathlib import Path

import torch

from flowkit.data import sample_toy
from flowkit.evaluation import sliced_wasserstein
from flowkit.solvers import sample_ode
from flowkit.training import Trainer, load_config


def test_checkerboard_1rf_many_steps_vs_one_step(tmp_path: Path) -> None:
    config = load_config(
        Path(__file__).parents[2] / "configs" / "checkerboard.yaml",
        [
            "train.steps=2000",
            "model.kwargs={hidden_dim: 64, num_layers: 3}",
            "optim.warmup_steps=100",
            "train.sample_every=0",
            "train.checkpoint_every=100000",
            "train.device=cpu",
        ],
    )
    trainer = Trainer(config, tmp_path, progress=False)
    trainer.fit()
    held_out = sample_toy("checkerboard", 5000, seed=99)
    noise_floor = sliced_wasserstein(held_out, sample_toy("checkerboard", 5000, seed=98))
    x0 = torch.randn(5000, 2, generator=torch.Generator().manual_seed(5))
    model = trainer.ema.ema_model
    sw_100 = sliced_wasserstein(sample_ode(model, x0, nfe=100).x, held_out)
    sw_1 = sliced_wasserstein(sample_ode(model, x0, nfe=1).x, held_out)
    assert sw_100 < 2.5 * noise_floor, (sw_100, noise_floor)
    assert sw_1 > 8 * sw_100, (sw_1, sw_100)
