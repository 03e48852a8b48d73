"""Phased pairs: the teacher's states at phase boundaries (``xb``), stored deterministically,
recorded in the manifest, read back, and fed to a phased Rectified Diffusion objective."""

import pytest
import torch

from flowkit.objectives import RectifiedDiffusionLoss
from flowkit.reflow import PairDataset, SolverSpec, generate_pairs, load_teacher
from flowkit.solvers import sample_ode, seeded_noise
from flowkit.training import Trainer, load_config

EULER = SolverSpec("euler", nfe=8)
HALVES = [0.0, 0.5, 1.0]


def test_phased_pairs_hold_the_teachers_states_at_the_boundaries(teacher_dir, tmp_path):
    teacher = load_teacher(teacher_dir)
    manifest = generate_pairs(
        teacher, 10, tmp_path / "p", EULER, boundaries=HALVES, batch_size=4, progress=False
    )
    assert manifest.boundaries == HALVES and manifest.nfe_per_pair == 8.0
    batch = PairDataset(tmp_path / "p").batch(torch.arange(10))
    x0 = seeded_noise((2,), range(10), seed=0)
    half = sample_ode(teacher.field, x0, nfe=4, t1=0.5).x
    whole = sample_ode(teacher.field, x0, nfe=8).x  # 4 + 4 Euler steps are these 8
    assert batch.xb.shape == (10, 3, 2)
    assert torch.equal(batch.xb[:, 0], x0) and torch.equal(batch.xb[:, 2], batch.x1)
    torch.testing.assert_close(batch.xb[:, 1], half, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batch.x1, whole, rtol=1e-5, atol=1e-6)


def test_phased_shards_are_deterministic_and_unphased_ones_have_no_states(teacher_dir, tmp_path):
    teacher = load_teacher(teacher_dir)
    args = dict(boundaries=HALVES, batch_size=3, shard_size=4, progress=False)
    one = generate_pairs(teacher, 9, tmp_path / "one", EULER, **args)
    (tmp_path / "one" / one.shards[1].file).unlink()  # a lost shard is rewritten identically
    resumed = generate_pairs(teacher, 9, tmp_path / "one", EULER, **args)
    two = generate_pairs(teacher, 9, tmp_path / "two", EULER, **args)
    assert [s.sha256 for s in resumed.shards] == [s.sha256 for s in two.shards]
    plain = generate_pairs(teacher, 9, tmp_path / "plain", EULER, batch_size=3, progress=False)
    assert plain.boundaries is None
    assert PairDataset(tmp_path / "plain").batch(torch.arange(9)).xb is None


def test_other_boundaries_in_the_same_directory_are_refused(teacher_dir, tmp_path):
    teacher = load_teacher(teacher_dir)
    generate_pairs(teacher, 4, tmp_path / "p", EULER, batch_size=2, progress=False)
    with pytest.raises(ValueError, match=r"boundaries \(None saved, \[0.0, 0.5, 1.0\] now\)"):
        generate_pairs(teacher, 4, tmp_path / "p", EULER, boundaries=HALVES, batch_size=2)


@pytest.mark.parametrize(
    ("boundaries", "solver", "match"),
    [
        ([0.1, 1.0], EULER, "must increase from 0 to the data end 1.0"),
        ([0.0, 0.5, 0.9], EULER, "must increase from 0 to the data end 1.0"),
        ([0.0, 0.6, 0.6, 1.0], EULER, "must increase"),
        ([0.0, 0.3, 0.6, 1.0], EULER, "nfe=8 must split evenly over 3 phases"),
    ],
)
def test_bad_boundaries_are_named(teacher_dir, tmp_path, boundaries, solver, match):
    with pytest.raises(ValueError, match=match):
        generate_pairs(load_teacher(teacher_dir), 4, tmp_path / "p", solver, boundaries=boundaries)
    assert not (tmp_path / "p").exists()


def test_the_trainer_feeds_the_boundary_states_to_a_phased_objective(
    teacher_dir, tmp_path, monkeypatch
):
    generate_pairs(
        load_teacher(teacher_dir), 64, tmp_path / "p", EULER, boundaries=HALVES, progress=False
    )
    seen = []
    original = RectifiedDiffusionLoss.phase_targets

    def spy(self, xb, t, shape):
        seen.append(tuple(xb.shape))
        return original(self, xb, t, shape)

    monkeypatch.setattr(RectifiedDiffusionLoss, "phase_targets", spy)
    config = load_config(
        None,
        [
            "data.name=pairs",
            f"data.root={tmp_path / 'p'}",
            "model.kind=mlp",
            "model.prediction=epsilon",
            "model.kwargs={hidden_dim: 16, num_layers: 2}",
            "objective.kind=rectified_diffusion",
            "objective.path=vp",
            "objective.kwargs={phases: 2}",
            "optim.batch_size=16",
            "train.steps=3",
            "train.sample_every=0",
            "train.device=cpu",
        ],
    )
    Trainer(config, tmp_path / "run", progress=False).fit()
    assert seen == [(16, 3, 2)] * 3
