"""Manifest shard names stay inside the pair directory (issue 11, defect 3).

``../outside/x.safetensors`` or ``/etc/passwd`` in ``manifest.json`` used to be opened;
entry ``k`` must now be the plain file name ``pairs-0000k.safetensors``.
"""

import json
import shutil
from pathlib import Path

import pytest

from flowkit.reflow import Manifest, PairDataset, SolverSpec, generate_pairs, load_teacher
from flowkit.reflow.layout import shard_index
from flowkit.reflow.shards import file_sha256

EULER = SolverSpec("euler", nfe=2)
ARGS = dict(batch_size=4, shard_size=6, progress=False)  # 10 pairs: two shards


@pytest.fixture
def pairs(teacher_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "pairs"
    generate_pairs(load_teacher(teacher_dir), 10, out, EULER, **ARGS)
    return out


def point_entry_at(pairs: Path, entry: int, file: str, target: Path | None = None) -> None:
    """Make manifest entry ``entry`` name ``file``; with ``target``, a valid copy of the
    shard sits there with a matching checksum, so only the name can be refused."""
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pairs / f"pairs-{entry:05d}.safetensors", target)
    manifest = json.loads((pairs / "manifest.json").read_text())
    manifest["shards"][entry]["file"] = file
    if target is not None:
        manifest["shards"][entry]["sha256"] = file_sha256(target)
    (pairs / "manifest.json").write_text(json.dumps(manifest))


def refusal(entry: int) -> str:
    """The refusal names the manifest, the entry and the name expected there (tests check
    the bad name itself with ``repr(file) in message``)."""
    return (
        rf"manifest\.json'?: shard entry {entry} names file .*"
        rf"expected the plain file name 'pairs-0000{entry}\.safetensors'"
    )


def test_a_shard_path_escaping_the_directory_is_refused(pairs, tmp_path):
    outside = tmp_path / "outside" / "x.safetensors"
    point_entry_at(pairs, 0, "../outside/x.safetensors", outside)
    with pytest.raises(ValueError, match=refusal(0)) as info:
        PairDataset(pairs)
    assert "'../outside/x.safetensors'" in str(info.value)


@pytest.mark.parametrize("verify", ["checksum", "header"])
def test_an_absolute_shard_path_is_refused(pairs, verify):
    point_entry_at(pairs, 1, "/etc/passwd")
    with pytest.raises(ValueError, match=refusal(1)) as info:
        PairDataset(pairs, verify=verify)
    assert "'/etc/passwd'" in str(info.value)


def test_an_absolute_path_to_a_valid_shard_elsewhere_is_refused(pairs, tmp_path):
    elsewhere = tmp_path / "elsewhere" / "pairs-00001.safetensors"
    point_entry_at(pairs, 1, str(elsewhere), elsewhere)
    with pytest.raises(ValueError, match=refusal(1)) as info:
        PairDataset(pairs)
    assert repr(str(elsewhere)) in str(info.value)


@pytest.mark.parametrize(
    "file",
    [
        ".",
        "..",
        "",
        "sub/pairs-00000.safetensors",
        "./pairs-00000.safetensors",
        "..\\pairs-00000.safetensors",
        "pairs-0.safetensors",
        "pairs-000000.safetensors",
        "pairs-00001.safetensors",  # another entry's file: shards must be in order
        "x.safetensors",
    ],
)
def test_only_the_writers_shard_name_is_accepted(pairs, file):
    point_entry_at(pairs, 0, file)
    with pytest.raises(ValueError, match=refusal(0)) as info:
        Manifest.load(pairs)
    assert repr(file) in str(info.value)
    with pytest.raises(ValueError, match=refusal(0)):
        PairDataset(pairs, verify="header")


def test_generation_resume_refuses_a_manifest_with_escaping_shard_paths(
    teacher_dir, pairs, tmp_path
):
    """A complete manifest used to be handed back as is, bad names included."""
    point_entry_at(pairs, 0, "../outside/x.safetensors", tmp_path / "outside" / "x.safetensors")
    with pytest.raises(ValueError, match=refusal(0)):
        generate_pairs(load_teacher(teacher_dir), 10, pairs, EULER, **ARGS)


def test_shard_index_reads_only_canonical_names():
    assert shard_index("pairs-00007.safetensors") == 7
    assert shard_index("pairs-123456.safetensors") == 123456
    for name in ("pairs-7.safetensors", "pairs-00007.safetensors.tmp", "/pairs-00007.safetensors"):
        assert shard_index(name) is None
