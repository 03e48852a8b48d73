"""Pair generation: seeded, sharded, resumable, and independent of how work is split."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flowkit.reflow import PairDataset, SolverSpec, generate_pairs, load_teacher
from flowkit.solvers import sample_ode, seeded_noise

RK4 = SolverSpec("rk4", nfe=8)


def shard_tensors(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.name: load_file(p) for p in sorted(folder.glob("pairs-*.safetensors"))}


def test_pairs_are_the_teachers_ode_solutions_from_seeded_noise(teacher_dir, tmp_path):
    teacher = load_teacher(teacher_dir)
    manifest = generate_pairs(
        teacher, 10, tmp_path / "p", RK4, seed=3, batch_size=4, shard_size=6, progress=False
    )
    assert manifest.complete and manifest.num == 10 and len(manifest.shards) == 2
    assert [(s.start, s.count) for s in manifest.shards] == [(0, 6), (6, 4)]
    assert manifest.nfe_per_pair == 8.0
    data = PairDataset(tmp_path / "p")
    batch = data.batch(torch.arange(10))
    x0 = seeded_noise((2,), range(10), seed=3)
    assert torch.equal(batch.x0, x0)
    expected = sample_ode(teacher.field, x0, nfe=8, method="rk4").x
    torch.testing.assert_close(batch.x1, expected, rtol=1e-5, atol=1e-6)
    assert batch.labels is None


def test_a_killed_run_resumes_with_no_gap_or_duplicate(teacher_dir, tmp_path, monkeypatch):
    teacher = load_teacher(teacher_dir)
    args = dict(seed=1, batch_size=3, shard_size=5, progress=False)
    generate_pairs(teacher, 17, tmp_path / "whole", RK4, **args)

    calls = {"n": 0}
    original = type(teacher).integrate

    def dies_on_fifth_batch(self, x0, labels, solver):
        calls["n"] += 1
        if calls["n"] == 5:  # inside the third shard: two shards are on disk
            raise KeyboardInterrupt
        return original(self, x0, labels, solver)

    monkeypatch.setattr(type(teacher), "integrate", dies_on_fifth_batch)
    with pytest.raises(KeyboardInterrupt):
        generate_pairs(teacher, 17, tmp_path / "resumed", RK4, **args)
    partial = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    assert not partial["complete"]
    assert sorted(p.name for p in (tmp_path / "resumed").glob("pairs-*")) == [
        "pairs-00000.safetensors",
        "pairs-00001.safetensors",
    ]
    with pytest.raises(ValueError, match="incomplete"):
        PairDataset(tmp_path / "resumed")
    monkeypatch.setattr(type(teacher), "integrate", original)
    calls["n"] = 0
    resumed = generate_pairs(teacher, 17, tmp_path / "resumed", RK4, **args)
    whole = json.loads((tmp_path / "whole" / "manifest.json").read_text())
    assert [s.sha256 for s in resumed.shards] == [s["sha256"] for s in whole["shards"]]
    a, b = shard_tensors(tmp_path / "whole"), shard_tensors(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)


def test_a_different_plan_in_the_same_directory_is_refused(teacher_dir, tmp_path):
    teacher = load_teacher(teacher_dir)
    generate_pairs(teacher, 4, tmp_path / "p", RK4, batch_size=2, progress=False)
    with pytest.raises(ValueError, match=r"seed \(0 saved, 5 now\)"):
        generate_pairs(teacher, 4, tmp_path / "p", RK4, seed=5, batch_size=2, progress=False)
    with pytest.raises(ValueError, match="solver"):
        generate_pairs(teacher, 4, tmp_path / "p", SolverSpec("euler", nfe=2), batch_size=2)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_storage(teacher_dir, tmp_path, dtype):
    teacher = load_teacher(teacher_dir)
    generate_pairs(teacher, 6, tmp_path / "full", RK4, progress=False)
    generate_pairs(teacher, 6, tmp_path / "half", RK4, dtype=dtype, progress=False)
    stored = load_file(tmp_path / "half" / "pairs-00000.safetensors")
    assert stored["x0"].dtype == stored["x1"].dtype == getattr(torch, dtype)
    full = PairDataset(tmp_path / "full").batch(torch.arange(6))
    half = PairDataset(tmp_path / "half").batch(torch.arange(6))
    assert half.x1.dtype == torch.float32
    tolerance = 1e-2 if dtype == "bfloat16" else 1e-3
    torch.testing.assert_close(half.x1, full.x1, rtol=tolerance, atol=tolerance)


def test_conditional_teacher_stores_seeded_labels(conditional_teacher_dir, tmp_path):
    teacher = load_teacher(conditional_teacher_dir)
    assert teacher.num_classes == 4
    generate_pairs(teacher, 40, tmp_path / "p", RK4, batch_size=7, progress=False)
    batch = PairDataset(tmp_path / "p").batch(torch.arange(40))
    assert batch.labels.dtype == torch.int64 and set(batch.labels.tolist()) == {0, 1, 2, 3}
    assert torch.equal(batch.labels, teacher.labels(range(40), 0))
    one = teacher.integrate(batch.x0[5:6], batch.labels[5:6], RK4)[0]
    torch.testing.assert_close(batch.x1[5:6], one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num": 0}, "num=0"),
        ({"num": 4, "batch_size": 0}, "batch_size=0"),
        ({"num": 4, "dtype": "int8"}, "dtype='int8'"),
    ],
)
def test_bad_arguments_name_the_value(teacher_dir, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_pairs(load_teacher(teacher_dir), out=tmp_path / "p", progress=False, **kwargs)
