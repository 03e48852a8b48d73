"""The pair data set: global indices across shards, memory-mapped, verified on open."""

from pathlib import Path

import pytest
import torch

from flowkit.reflow import CorruptShardError, PairDataset, SolverSpec, generate_pairs, load_teacher
from flowkit.training.batches import InMemoryBatches
from flowkit.training.index_stream import IndexStream

EULER = SolverSpec("euler", nfe=2)


@pytest.fixture
def pairs(teacher_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "pairs"
    generate_pairs(
        load_teacher(teacher_dir), 23, out, EULER, batch_size=4, shard_size=10, progress=False
    )
    return out


def test_batches_gather_across_shards_in_the_order_asked(pairs):
    data = PairDataset(pairs)
    assert len(data) == 23 and data.sample_shape == (2,) and data.num_classes is None
    everything = data.batch(torch.arange(23))
    order = torch.tensor([22, 0, 15, 9, 10, 3, 15])
    batch = data.batch(order)
    assert torch.equal(batch.x0, everything.x0[order])
    assert torch.equal(batch.x1, everything.x1[order])
    x0, x1 = data[15]
    assert torch.equal(x0, everything.x0[15]) and torch.equal(x1, everything.x1[15])
    with pytest.raises(IndexError, match=r"\[0, 23\)"):
        data.batch(torch.tensor([23]))


def test_reads_are_memory_mapped_not_loaded(pairs):
    data = PairDataset(pairs)
    import numpy as np

    assert all(isinstance(a, np.memmap) for s in data.shards for a, _ in s.arrays.values())


def test_the_trainer_batch_source_shuffles_over_all_shards(pairs):
    data = PairDataset(pairs)
    source = InMemoryBatches(data, IndexStream(len(data), 23, seed=0), torch.device("cpu"), 0)
    batch = source.next()
    assert batch.x0 is not None and batch.x1.shape == (23, 2)
    # one epoch visits every pair once, from all three shards, in a shuffled order
    seen = {tuple(row.tolist()) for row in batch.x0}
    assert seen == {tuple(row.tolist()) for row in data.batch(torch.arange(23)).x0}


def test_a_corrupted_shard_is_named(pairs):
    shard = pairs / "pairs-00001.safetensors"
    raw = bytearray(shard.read_bytes())
    raw[-3] ^= 0xFF  # flip bits in the last x1 value
    shard.write_bytes(bytes(raw))
    with pytest.raises(CorruptShardError, match="pairs-00001.safetensors") as info:
        PairDataset(pairs)
    assert "checksum" in str(info.value)
    PairDataset(pairs, verify="header")  # sizes still agree: only the checksum sees it


def test_a_truncated_or_missing_shard_is_named(pairs):
    shard = pairs / "pairs-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-8])
    with pytest.raises(CorruptShardError, match="pairs-00002.safetensors"):
        PairDataset(pairs, verify="header")
    shard.unlink()
    with pytest.raises(CorruptShardError, match="pairs-00002.safetensors.*missing"):
        PairDataset(pairs)


def test_not_a_pair_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        PairDataset(tmp_path)
    with pytest.raises(ValueError, match="verify='sha1'"):
        PairDataset(tmp_path, verify="sha1")
