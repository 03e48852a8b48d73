"""Online reflow: the same pairs as stored ones, made during training without disk."""

import pytest
import torch

from flowkit.reflow import OnlinePairs, PairDataset, SolverSpec, generate_pairs, load_teacher
from flowkit.training import Trainer, load_config

HEUN = SolverSpec("heun", nfe=4)


def test_online_pairs_equal_stored_pairs(teacher_dir, tmp_path):
    teacher = load_teacher(teacher_dir)
    generate_pairs(teacher, 12, tmp_path / "p", HEUN, seed=2, batch_size=12, progress=False)
    stored = PairDataset(tmp_path / "p").batch(torch.arange(12))
    online = OnlinePairs(teacher, 12, HEUN, seed=2)
    order = torch.tensor([7, 1, 11, 4])
    batch = online.batch(order)
    assert torch.equal(batch.x0, stored.x0[order])
    torch.testing.assert_close(batch.x1, stored.x1[order], rtol=1e-6, atol=1e-6)
    assert not any(p.requires_grad for p in teacher.field.parameters())


def overrides(teacher_dir, data: list[str]) -> list[str]:
    return [
        *data,
        f"model.init_from={teacher_dir}",
        "model.kind=mlp",
        "optim.batch_size=8",
        "train.steps=3",
        "train.device=cpu",
        "train.checkpoint_every=100",
    ]


def test_training_on_stored_and_online_pairs(teacher_dir, tmp_path):
    """A 2-RF run from the teacher on stored pairs and the same run with online pairs take
    the same batches, so they end with the same weights."""
    teacher = load_teacher(teacher_dir)
    generate_pairs(teacher, 16, tmp_path / "p", HEUN, batch_size=8, progress=False)
    stored = load_config(
        None, overrides(teacher_dir, ["data.name=pairs", f"data.root={tmp_path / 'p'}"])
    )
    online = load_config(
        None,
        overrides(
            teacher_dir,
            [
                "data.name=teacher",
                f"data.root={teacher_dir}",
                "data.num_points=16",
                "data.kwargs={method: heun, nfe: 4}",
            ],
        ),
    )
    a = Trainer(stored, tmp_path / "a", progress=False)
    a.fit()
    b = Trainer(online, tmp_path / "b", progress=False)
    b.fit()
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_config_errors_name_the_key(teacher_dir, tmp_path):
    bad = load_config(None, overrides(teacher_dir, ["data.name=pairs"]))
    with pytest.raises(ValueError, match="data.root"):
        Trainer(bad, tmp_path / "x", progress=False)
    bad = load_config(
        None,
        overrides(
            teacher_dir, ["data.name=teacher", f"data.root={teacher_dir}", "data.kwargs={tol: 1}"]
        ),
    )
    with pytest.raises(ValueError, match="data.kwargs.tol"):
        Trainer(bad, tmp_path / "y", progress=False)
