"""Shards carry their own provenance, and a restart checks it (issue 11, defect 2).

A reflow directory whose manifest was deleted used to be resumed by any teacher: the old
shards were kept and a complete manifest naming the new teacher was stamped over them.
Now every shard records the plan it was written under and its row range, and generation
(with or without a manifest) and :class:`PairDataset` compare it with the plan.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from flowkit.models import MLPField
from flowkit.reflow import (
    CorruptShardError,
    LoadedTeacher,
    PairDataset,
    SolverSpec,
    generate_pairs,
    load_teacher,
)
from flowkit.reflow.shards import file_sha256, write_shard

RK4 = SolverSpec("rk4", nfe=8)
ARGS = dict(seed=1, batch_size=3, shard_size=5, progress=False)  # 17 pairs: shards 5 5 5 2


@pytest.fixture
def other_teacher_dir(tmp_path: Path) -> Path:
    """A second untrained teacher with the same architecture and other weights."""
    torch.manual_seed(1)
    folder = tmp_path / "other_teacher"
    MLPField(dim=2, hidden_dim=16, num_layers=2).save_pretrained(folder)
    return folder


def shard_info(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["shard"])


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("pairs-*.safetensors"))}


def killed_run(teacher: LoadedTeacher, out: Path, monkeypatch, **overrides) -> None:
    """Run generation into ``out`` and kill it inside the third shard (two shards on disk),
    then delete the manifest, as a user cleaning up would."""
    calls = {"n": 0}
    original = type(teacher).integrate

    def dies_on_fifth_batch(self, x0, labels, solver):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, x0, labels, solver)

    with monkeypatch.context() as patch:
        patch.setattr(type(teacher), "integrate", dies_on_fifth_batch)
        with pytest.raises(KeyboardInterrupt):
            generate_pairs(teacher, 17, out, overrides.pop("solver", RK4), **{**ARGS, **overrides})
    assert sorted(shard_bytes(out)) == ["pairs-00000.safetensors", "pairs-00001.safetensors"]
    (out / "manifest.json").unlink()


def test_each_shard_records_its_plan_and_row_range(teacher_dir, tmp_path):
    manifest = generate_pairs(load_teacher(teacher_dir), 17, tmp_path / "p", RK4, **ARGS)
    plan = json.loads(json.dumps(manifest.plan()))
    for k, record in enumerate(manifest.shards):
        info = shard_info(tmp_path / "p" / record.file)
        assert info["plan"] == plan, record.file
        assert (info["start"], info["count"]) == (5 * k, record.count)
    assert plan["teacher_digest"] == manifest.teacher_digest and plan["seed"] == 1
    assert plan["solver"]["method"] == "rk4" and plan["dtype"] == "float32"


def test_resume_without_manifest_and_same_plan_matches_an_uninterrupted_run(
    teacher_dir, tmp_path, monkeypatch
):
    teacher = load_teacher(teacher_dir)
    whole = generate_pairs(teacher, 17, tmp_path / "whole", RK4, **ARGS)
    killed_run(teacher, tmp_path / "resumed", monkeypatch)
    kept = shard_bytes(tmp_path / "resumed")

    calls = {"n": 0}
    original = type(teacher).integrate

    def counted(self, x0, labels, solver):
        calls["n"] += 1
        return original(self, x0, labels, solver)

    monkeypatch.setattr(type(teacher), "integrate", counted)
    resumed = generate_pairs(teacher, 17, tmp_path / "resumed", RK4, **ARGS)
    assert calls["n"] == 3  # only shards 2 and 3 (2 + 1 batches): the kept ones were reused
    assert resumed.complete and resumed.shards == whole.shards  # names, ranges, checksums
    after = shard_bytes(tmp_path / "resumed")
    assert after == shard_bytes(tmp_path / "whole")
    assert all(after[name] == data for name, data in kept.items())


def test_resume_without_manifest_refuses_shards_of_another_teacher(
    teacher_dir, other_teacher_dir, tmp_path, monkeypatch
):
    first, second = load_teacher(teacher_dir), load_teacher(other_teacher_dir)
    out = tmp_path / "p"
    killed_run(first, out, monkeypatch)
    kept = shard_bytes(out)
    with pytest.raises(ValueError) as info:
        generate_pairs(second, 17, out, RK4, **ARGS)
    message = str(info.value)
    assert "pairs-00000.safetensors" in message and "pairs-00001.safetensors" in message
    assert f"teacher_digest: {first.digest()!r} in the shard" in message
    assert f"{second.digest()!r} in the plan" in message
    assert "--out" in message and "delete" in message
    assert shard_bytes(out) == kept  # nothing rewritten
    assert not (out / "manifest.json").exists()  # and no manifest stamped over the old shards


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seed": 2}, "seed: 1 in the shard, 2 in the plan"),
        ({"solver": SolverSpec("euler", nfe=8)}, "solver.method: 'rk4' in the shard, 'euler'"),
        ({"solver": SolverSpec("rk4", nfe=12)}, "solver.nfe: 8 in the shard, 12 in the plan"),
        ({"dtype": "float16"}, "dtype: 'float32' in the shard, 'float16' in the plan"),
        ({"batch_size": 2}, "batch_size: 3 in the shard, 2 in the plan"),
    ],
)
def test_resume_without_manifest_refuses_another_seed_solver_or_size(
    teacher_dir, tmp_path, monkeypatch, change, field
):
    teacher = load_teacher(teacher_dir)
    killed_run(teacher, tmp_path / "p", monkeypatch)
    solver = change.pop("solver", RK4)
    with pytest.raises(ValueError, match="pairs-00000.safetensors") as info:
        generate_pairs(teacher, 17, tmp_path / "p", solver, **{**ARGS, **change})
    assert field in str(info.value)


def test_stale_shards_of_a_larger_run_are_refused(teacher_dir, tmp_path):
    teacher = load_teacher(teacher_dir)
    generate_pairs(teacher, 17, tmp_path / "p", RK4, **ARGS)
    (tmp_path / "p" / "manifest.json").unlink()
    with pytest.raises(ValueError, match=r"num: 17 in the shard, 8 in the plan") as info:
        generate_pairs(teacher, 8, tmp_path / "p", RK4, **ARGS)
    assert "4 more shard(s) differ" not in str(info.value)  # shards 1..3: three more
    assert "3 more shard(s) differ too: pairs-00001" in str(info.value)


def test_resume_refuses_shards_whose_noise_is_not_this_flowkits(teacher_dir, tmp_path, monkeypatch):
    """Same plan, but the seed derivation changed between the runs: the stored noise of
    the kept shards is not what this run draws, so continuing would mix two noise streams."""
    teacher = load_teacher(teacher_dir)
    killed_run(teacher, tmp_path / "p", monkeypatch)
    original = type(teacher).noise
    monkeypatch.setattr(
        type(teacher), "noise", lambda self, indices, seed: -original(self, indices, seed)
    )
    with pytest.raises(ValueError, match=r"pairs-00000.safetensors.*x0: the stored noise"):
        generate_pairs(teacher, 17, tmp_path / "p", RK4, **ARGS)


def swap_in_foreign_shard(own: Path, foreign: Path, name: str) -> None:
    """Replace ``own/name`` by ``foreign/name`` and fix the manifest's checksum, as the old
    code did when it resumed over another teacher's shards."""
    shutil.copyfile(foreign / name, own / name)
    manifest = json.loads((own / "manifest.json").read_text())
    other = json.loads((foreign / "manifest.json").read_text())
    for mine, theirs in zip(manifest["shards"], other["shards"], strict=True):
        if mine["file"] == name:
            mine["sha256"] = theirs["sha256"]
    (own / "manifest.json").write_text(json.dumps(manifest))


def test_pair_dataset_refuses_a_shard_of_another_teacher_despite_its_checksum(
    teacher_dir, other_teacher_dir, tmp_path
):
    first, second = load_teacher(teacher_dir), load_teacher(other_teacher_dir)
    generate_pairs(first, 17, tmp_path / "a", RK4, **ARGS)
    generate_pairs(second, 17, tmp_path / "b", RK4, **ARGS)
    swap_in_foreign_shard(tmp_path / "b", tmp_path / "a", "pairs-00001.safetensors")
    for verify in ("checksum", "header"):
        with pytest.raises(CorruptShardError, match="pairs-00001.safetensors") as info:
            PairDataset(tmp_path / "b", verify=verify)
        assert f"teacher_digest: {first.digest()!r} in the shard" in str(info.value)
    with pytest.raises(ValueError, match=r"pairs-00001.safetensors.*teacher_digest"):
        generate_pairs(second, 17, tmp_path / "b", RK4, **ARGS)  # a complete set is checked too


def strip_provenance(folder: Path) -> None:
    """Rewrite every shard as flowkit wrote them before shards recorded provenance."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for record in manifest["shards"]:
        path = folder / record["file"]
        write_shard(path, load_file(path), {"start": record["start"], "nfe_per_batch": 8.0})
        record["sha256"] = file_sha256(path)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_shards_without_provenance_are_read_but_not_resumed(teacher_dir, tmp_path):
    teacher = load_teacher(teacher_dir)
    generate_pairs(teacher, 17, tmp_path / "p", RK4, **ARGS)
    expected = PairDataset(tmp_path / "p").batch(torch.arange(17))
    strip_provenance(tmp_path / "p")
    legacy = PairDataset(tmp_path / "p").batch(torch.arange(17))  # the checksum vouches
    assert torch.equal(legacy.x1, expected.x1)
    assert generate_pairs(teacher, 17, tmp_path / "p", RK4, **ARGS).complete  # nothing to do
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    manifest["complete"] = False  # an interrupted run of an older flowkit
    (tmp_path / "p" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"pairs-00000.safetensors.*provenance: none recorded"):
        generate_pairs(teacher, 17, tmp_path / "p", RK4, **ARGS)


def test_a_deleted_shard_of_a_complete_set_is_regenerated(teacher_dir, tmp_path):
    """The fix the refusals suggest: delete the bad shard and rerun the same command."""
    teacher = load_teacher(teacher_dir)
    generate_pairs(teacher, 17, tmp_path / "p", RK4, **ARGS)
    before = shard_bytes(tmp_path / "p")
    (tmp_path / "p" / "pairs-00001.safetensors").unlink()
    generate_pairs(teacher, 17, tmp_path / "p", RK4, **ARGS)
    assert shard_bytes(tmp_path / "p") == before
    assert len(PairDataset(tmp_path / "p")) == 17
