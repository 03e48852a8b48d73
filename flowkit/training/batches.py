"""Batch sources for the trainer: a fast in-memory gather, or a DataLoader over files.

Both draw indices from an :class:`~flowkit.training.index_stream.IndexStream`, so the
data order is resumable and split across ranks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from flowkit.data.batch import Batch
from flowkit.training.checkpoint import decode_rng, encode_rng
from flowkit.training.index_stream import IndexStream


class InMemoryBatches:
    """Gathers ``dataset.batch(indices)`` straight from tensors held in memory (or memory
    maps); a data set whose ``batch`` returns a :class:`Batch` supplies paired noise."""

    def __init__(self, dataset, stream: IndexStream, device: torch.device, seed: int) -> None:
        self.dataset, self.stream, self.device = dataset, stream, device
        self.augment = torch.Generator().manual_seed(seed)

    def next(self) -> Batch:
        items = self.dataset.batch(self.stream.next_batch(), generator=self.augment)
        batch = items if isinstance(items, Batch) else Batch(*items)
        return batch.to(self.device)

    def state(self) -> dict:
        return {"stream": self.stream.state(), "augment": encode_rng(self.augment.get_state())}

    def load_state(self, state: dict) -> None:
        self.stream.load_state(state["stream"])
        self.augment.set_state(decode_rng(state["augment"]))


class _StreamSampler(Sampler[list[int]]):
    """Endless batches of indices; remembers the stream position after each batch."""

    def __init__(self, stream: IndexStream) -> None:
        self.stream = stream
        self.positions: deque[dict] = deque()

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            batch = self.stream.next_batch().tolist()
            self.positions.append(self.stream.state())
            yield batch


class LoaderBatches:
    """A DataLoader with worker processes over a per-item data set (image folders).

    The loader prefetches, so the stream runs ahead; the position saved in a checkpoint
    is the one after the last batch actually consumed.
    """

    def __init__(
        self, dataset: Dataset, stream: IndexStream, device: torch.device, num_workers: int
    ) -> None:
        self.dataset, self.stream, self.device, self.num_workers = (
            dataset,
            stream,
            device,
            num_workers,
        )
        self._consumed = stream.state()
        self._iterator: Iterator | None = None

    def _start(self) -> None:
        self.stream.load_state(self._consumed)
        self._sampler = _StreamSampler(self.stream)
        loader = DataLoader(
            self.dataset,
            batch_sampler=self._sampler,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.num_workers > 0,
            worker_init_fn=_ignore_interrupts if self.num_workers > 0 else None,
        )
        self._iterator = iter(loader)

    def next(self) -> Batch:
        if self._iterator is None:
            self._start()
        items = next(self._iterator)
        self._consumed = self._sampler.positions.popleft()
        return Batch(items[0], items[1] if len(items) > 1 else None).to(self.device)

    def state(self) -> dict:
        return {"stream": dict(self._consumed)}

    def load_state(self, state: dict) -> None:
        self._consumed = dict(state["stream"])
        self._iterator = None


def make_batches(
    dataset: Dataset, stream: IndexStream, device: torch.device, seed: int, num_workers: int = 0
) -> InMemoryBatches | LoaderBatches:
    """The in-memory source when the data set offers ``batch()``, else a DataLoader."""
    if hasattr(dataset, "batch"):
        return InMemoryBatches(dataset, stream, device, seed)
    return LoaderBatches(dataset, stream, device, num_workers)


def _ignore_interrupts(worker_id: int) -> None:
    """Loader workers leave Ctrl-C to the main process, which stops after the current step
    and checkpoints (a terminal's Ctrl-C reaches the whole process group)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
