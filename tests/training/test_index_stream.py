"""The index stream: epochs are permutations, ranks split them, state resumes exactly."""

import torch

from flowkit.training.index_stream import IndexStream


def test_each_epoch_visits_every_index_once() -> None:
    stream = IndexStream(10, batch_size=4, seed=3)
    seen = torch.cat([stream.next_batch() for _ in range(5)])  # 20 indices = 2 epochs
    assert sorted(seen[:10].tolist()) == list(range(10))
    assert sorted(seen[10:].tolist()) == list(range(10))


def test_ranks_partition_an_epoch() -> None:
    a = IndexStream(12, batch_size=6, seed=1, rank=0, world_size=2).next_batch()
    b = IndexStream(12, batch_size=6, seed=1, rank=1, world_size=2).next_batch()
    assert sorted(torch.cat([a, b]).tolist()) == list(range(12))


def test_state_resumes_the_same_batches() -> None:
    full = IndexStream(7, batch_size=3, seed=0)
    batches = [full.next_batch() for _ in range(6)]
    part = IndexStream(7, batch_size=3, seed=0)
    for _ in range(2):
        part.next_batch()
    resumed = IndexStream(7, batch_size=3, seed=0)
    resumed.load_state(part.state())
    for expected in batches[2:]:
        torch.testing.assert_close(resumed.next_batch(), expected)
