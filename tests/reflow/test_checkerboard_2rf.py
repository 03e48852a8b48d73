"""End to end on the 2-D checkerboard: one reflow makes one Euler step nearly enough.

The chain: train a 1-RF, store 8000 of its (noise, sample) pairs (dopri5, rtol = atol =
1e-5), train a 2-RF on them initialised from the 1-RF. Measured with these settings
(seeds fixed, one thread): sliced Wasserstein to held-out data at 1 Euler step 0.501
(1-RF) against 0.109 (2-RF), a 4.6x drop; straightness 0.407 against 0.0105 (39x). The
asserts ask for 3x and 10x.
"""

from pathlib import Path

import torch

from flowkit.data import sample_toy
from flowkit.evaluation import sliced_wasserstein, straightness
from flowkit.reflow import SolverSpec, generate_pairs, load_teacher
from flowkit.solvers import sample_ode
from flowkit.training import Trainer, load_config

CONFIG = Path(__file__).parents[2] / "configs" / "checkerboard.yaml"
COMMON = [
    "model.kwargs={hidden_dim: 64, num_layers: 3}",
    "train.sample_every=0",
    "train.checkpoint_every=100000",
    "train.device=cpu",
]


def test_2rf_beats_its_1rf_teacher_at_one_step(tmp_path: Path) -> None:
    first = Trainer(
        load_config(CONFIG, [*COMMON, "train.steps=2000", "optim.warmup_steps=100"]),
        tmp_path / "rf1",
        progress=False,
    )
    first.fit()
    teacher = load_teacher(tmp_path / "rf1")
    generate_pairs(teacher, 8000, tmp_path / "pairs", SolverSpec(), batch_size=1000, progress=False)
    second = Trainer(
        load_config(
            CONFIG,
            [
                *COMMON,
                "train.steps=1200",
                "optim.warmup_steps=0",
                "optim.lr=5e-4",
                "data.name=pairs",
                f"data.root={tmp_path / 'pairs'}",
                f"model.init_from={tmp_path / 'rf1'}",
            ],
        ),
        tmp_path / "rf2",
        progress=False,
    )
    second.fit()

    held_out = sample_toy("checkerboard", 5000, seed=99)
    x0 = torch.randn(5000, 2, generator=torch.Generator().manual_seed(5))
    rf1, rf2 = first.ema.ema_model, second.ema.ema_model
    sw1 = sliced_wasserstein(sample_ode(rf1, x0, nfe=1).x, held_out)
    sw2 = sliced_wasserstein(sample_ode(rf2, x0, nfe=1).x, held_out)
    assert sw2 * 3 < sw1, (sw1, sw2)
    s1, s2 = straightness(rf1, x0, nfe=100), straightness(rf2, x0, nfe=100)
    assert s2 < 0.1 * s1, (s1, s2)
