"""Token rows on the device for decoder language models: the record streams of a streamed corpus,
its held-out rows, and the training batches of in-memory and streamed corpora.

DDP: ``batches(generator, rank, world_size)`` shards by rank; the generator must be seeded the same on
every rank. In-memory corpora draw one global batch per step and give rank r rows
``[r * b, (r + 1) * b)`` (b = batch_size / world_size), so a W-process run follows the same trajectory
as one process with the whole batch. Streamed corpora give each rank a disjoint share of the documents
(``datasets.distributed.split_dataset_by_node`` or every W-th record), each rank packing its own rows.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.errors import UserError
from tasks.data.tokenizing import pack_rows, tokenized

# --------------------------------------------------------------------------------------------------
# Record streams and held-out rows


@dataclass(frozen=True)
class StreamSource:
    """Opens record streams ({"text": ...} dicts) for a streamed corpus.

    ``open_train()`` / ``open_heldout()`` return fresh iterables: HF ``IterableDataset`` objects for real
    corpora and local copies, or any iterable (tests, custom corpora). ``carve``: held-out documents
    come from the head of the train stream and are skipped in training.
    """

    open_train: Callable[[], Iterable[Mapping[str, Any]]]
    open_heldout: Callable[[], Iterable[Mapping[str, Any]]]
    carve: bool
    name: str = "stream"


def heldout_rows(
    records: Iterable[Mapping[str, Any]],
    tok,
    vocab: int,
    ctx: int,
    n_tokens: int,
    splits: tuple[str, ...] = ("val", "test"),
) -> tuple[dict[str, np.ndarray], frozenset[bytes]]:
    """The first ``n_tokens`` (rounded up to whole rows) of the stream for each split, in order, and
    the content hashes of every document consumed (to exclude them from training when carving)."""
    rows_per_split = max(1, -(-n_tokens // ctx))
    need = rows_per_split * len(splits)
    hashes: list[bytes] = []
    rows: list[np.ndarray] = []
    # One document at a time, so ``hashes`` names exactly the documents the held-out rows used.
    docs = tokenized(records, tok, vocab, chunk=1, hashes=hashes)
    for row in pack_rows(docs, ctx, tok.eos_id):
        rows.append(row)
        if len(rows) == need:
            break
    docs.close()
    if len(rows) < need:
        raise UserError(
            f"held-out stream too short: need {need} rows of {ctx + 1} tokens "
            f"({len(splits)} x val_tokens={n_tokens}), got {len(rows)}; lower val_tokens"
        )
    out = {s: np.stack(rows[i * rows_per_split : (i + 1) * rows_per_split]) for i, s in enumerate(splits)}
    return out, frozenset(hashes)


# --------------------------------------------------------------------------------------------------
# Device-side streams


def dist_rank_world() -> tuple[int, int]:
    """(rank, world size) under torch.distributed, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _local_batch(batch_size: int, world_size: int) -> int:
    if world_size < 1 or batch_size % world_size:
        raise UserError(
            f"batch_size {batch_size} is not divisible by world_size {world_size}; "
            f"set the task option batch_size to a multiple of {world_size}"
        )
    return batch_size // world_size


class _HeldOut:
    """Held-out rows (n, ctx + 1) per split, placed on the device once."""

    heldout: dict[str, torch.Tensor]
    batch_size: int


class InMemoryTokens(_HeldOut):
    """A whole tokenised corpus on the device; batches are random windows drawn from the generator."""

    def __init__(
        self, train: np.ndarray, heldout: Mapping[str, np.ndarray], ctx: int, batch_size: int, device: torch.device
    ) -> None:
        if train.size < ctx + 2:
            raise UserError(f"training text too short: {train.size} tokens for ctx {ctx}")
        self.ctx, self.batch_size, self.device = ctx, batch_size, torch.device(device)
        self.train = torch.from_numpy(np.array(train, dtype=np.int32)).to(
            self.device
        )  # a copy: ``train`` may be shared, read-only
        self.heldout = {k: torch.from_numpy(v.astype(np.int64)).to(self.device) for k, v in heldout.items()}
        self._offsets = torch.arange(ctx + 1, device=self.device)

    def batches(
        self, generator: torch.Generator, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> Iterator[tuple]:
        """Endless (x, y) batches of ``batch_size / world_size`` rows for this rank. Every rank draws the
        same global batch from the (identically seeded) generator and keeps its slice. ``start`` skips
        that many batches (a resumed run) by drawing their offsets only."""
        b = _local_batch(self.batch_size, world_size)
        high = self.train.numel() - self.ctx - 1
        pin = self.device.type == "cuda"
        for _ in range(start):
            torch.randint(0, high + 1, (self.batch_size,), generator=generator)
        while True:
            # Drawn on CPU so the stream is the same on every device type; one tiny H2D copy per step.
            starts = torch.randint(0, high + 1, (self.batch_size,), generator=generator)[rank * b : (rank + 1) * b]
            if pin:
                starts = starts.pin_memory()
            starts = starts.to(self.device, non_blocking=True)
            rows = self.train[starts[:, None] + self._offsets].long()
            yield rows[:, :-1], rows[:, 1:]


class StreamedTokens(_HeldOut):
    """Training rows packed from a record stream on a background thread (tokenisation overlaps the
    step); held-out rows fixed at construction."""

    def __init__(
        self,
        source: StreamSource,
        tok,
        vocab: int,
        ctx: int,
        batch_size: int,
        val_tokens: int,
        device: torch.device,
        prefetch: int = 8,
    ) -> None:
        self.source, self.tok, self.vocab, self.ctx = source, tok, vocab, ctx
        self.batch_size, self.device, self.prefetch = batch_size, torch.device(device), prefetch
        held, hashes = heldout_rows(source.open_heldout(), tok, vocab, ctx, val_tokens)
        self.heldout = {k: torch.from_numpy(v.astype(np.int64)).to(self.device) for k, v in held.items()}
        self.skip = hashes if source.carve else frozenset()

    def _records(self, seed: int, epoch: int, rank: int, world_size: int) -> Iterable[Mapping[str, Any]]:
        ds = self.source.open_train()
        if hasattr(ds, "shuffle") and hasattr(ds, "set_epoch"):  # a datasets.IterableDataset
            from datasets.distributed import split_dataset_by_node

            try:
                # One input shard at a time: datasets >= 4 otherwise interleaves shards on threads and
                # sleeps 5 s whenever that interleaving ends (each epoch); the block shuffle of packed
                # rows below and the shard-order shuffle still decorrelate neighbouring rows.
                ds = ds.shuffle(seed=seed, buffer_size=10_000, max_buffer_input_shards=1)
            except TypeError:  # older datasets: no interleaving, no such argument
                ds = ds.shuffle(seed=seed, buffer_size=10_000)
            ds.set_epoch(epoch)
            return split_dataset_by_node(ds, rank=rank, world_size=world_size) if world_size > 1 else ds
        return (r for i, r in enumerate(ds) if i % world_size == rank)

    def rows(self, seed: int, rank: int = 0, world_size: int = 1) -> Iterator[np.ndarray]:
        """Endless batches (b, ctx + 1) of int32 for this rank, deterministic given ``seed``: records
        shuffled (HF shard order + buffer), packed, then rows shuffled in blocks."""
        b = _local_batch(self.batch_size, world_size)
        g = torch.Generator().manual_seed(seed)
        block = max(16 * b, 1024)  # rows shuffled together; decorrelates rows cut from one document
        pending: list[np.ndarray] = []
        epoch = 0
        while True:
            hf_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
            records = self._records(hf_seed, epoch, rank, world_size)
            docs = tokenized(records, self.tok, self.vocab, skip=self.skip)
            got = 0
            for row in pack_rows(docs, self.ctx, self.tok.eos_id):
                pending.append(row)
                got += 1
                if len(pending) >= block:
                    yield from self._emit(pending, b, g)
            if got == 0:
                raise UserError(
                    f"{self.source.name}: rank {rank} of {world_size} got no training tokens "
                    f"(empty stream or every document held out)"
                )
            epoch += 1

    @staticmethod
    def _emit(pending: list[np.ndarray], b: int, g: torch.Generator) -> Iterator[np.ndarray]:
        order = torch.randperm(len(pending), generator=g).numpy()
        stacked = np.stack(pending)[order]
        full = (len(pending) // b) * b
        for i in range(0, full, b):
            yield stacked[i : i + b]
        pending[:] = list(stacked[full:])

    def batches(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> Iterator[tuple]:
        """Endless (x, y) batches for this rank; order from ``generator`` only."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        rows = self.rows(seed, rank, world_size)
        source = (
            _prefetch(rows, self.prefetch, pin=self.device.type == "cuda")
            if self.prefetch
            else (torch.from_numpy(r) for r in rows)
        )
        for cpu in source:
            t = cpu.to(self.device, non_blocking=True).long()
            yield t[:, :-1], t[:, 1:]


def _prefetch(rows: Iterator[np.ndarray], depth: int, pin: bool) -> Iterator[torch.Tensor]:
    """Run ``rows`` on a daemon thread, ``depth`` batches ahead; exceptions re-raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for r in rows:
                t = torch.from_numpy(r)
                t = t.pin_memory() if pin else t
                while not stop.is_set():
                    try:
                        q.put(t, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=work, daemon=True, name="llm-token-stream")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
