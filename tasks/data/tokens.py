"""Token data for decoder language models: tokenizers, offline corpora split at the token level,
streamed hub corpora (FineWeb-Edu, C4) packed into rows, and the device-side streams.

Corpora (``DATASETS``):
  * ``pydoc``: CPython's bundled ``pydoc_data.topics`` (79 documents of real English prose, ~465k
    characters), offline. ``path:<file>``: any local text file, same treatment. Offline corpora are
    split contiguously at the token level: 90 % train, then 5 % val, 5 % test.
  * ``fineweb-edu`` (``HuggingFaceFW/fineweb-edu``, config ``sample-10BT``) and ``c4`` (``allenai/c4``,
    ``en``): streamed with HF ``datasets`` (``streaming=True``), tokenised on the fly with a
    ``tokenizers`` tokenizer, documents joined by the tokenizer's end-of-text id and packed into rows
    of ``ctx + 1`` tokens. A local copy in the hub's own layout under the data dir
    (``<data_dir>/fineweb-edu/sample/10BT/*.parquet``, ``<data_dir>/c4/en/c4-*.json.gz``) or in the
    Hugging Face hub cache is used first, so runs work offline. Held-out data: C4's ``validation``
    split; FineWeb-Edu has only ``train``, so val/test are carved from the head of the unshuffled stream
    and those documents are skipped (by content hash) in training.

Tokenizers: ``bytes`` (UTF-8 bytes + an end-of-document id), a ``tokenizers`` tokenizer.json, or a hub
id whose tokenizer.json is in the HF cache (downloaded when allowed).

DDP: ``batches(generator, rank, world_size)`` shards by rank; the generator must be seeded the same on
every rank. In-memory corpora draw one global batch per step and give rank r rows
``[r * b, (r + 1) * b)`` (b = batch_size / world_size), so a W-process run follows the same trajectory
as one process with the whole batch. Streamed corpora give each rank a disjoint share of the documents
(``datasets.distributed.split_dataset_by_node`` or every W-th record), each rank packing its own rows.
"""

from __future__ import annotations

import glob
import hashlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import UserError, missing_data
from harness.paths import offline
from harness.task import Dataset
from tasks.data import text

BYTES = "bytes"

# --------------------------------------------------------------------------------------------------
# Tokenizers


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, plus 256 = end of document."""

    name = BYTES
    vocab_size = 257
    text_vocab_size = 257
    eos_id = 256
    unk_id = None

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8", errors="replace"), dtype=np.uint8).astype(np.int32) for t in texts]


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` (tokenizer.json); no special tokens added, we add end-of-document."""

    _EOS = ("</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", "[SEP]", "<|eot_id|>")
    _UNK = ("<unk>", "[UNK]", "<|unk|>")

    def __init__(self, tok: Any, name: str) -> None:
        self.tok, self.name = tok, name
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        # Ids plain text can produce: the model's vocabulary minus added/special tokens, which are only
        # emitted for their literal string (T5's converted tokenizer.json lists its 100 <extra_id_*>
        # both in the Unigram vocab and as added tokens; text never yields them).
        added = set(tok.get_added_tokens_decoder()) if hasattr(tok, "get_added_tokens_decoder") else set()
        plain = [i for i in tok.get_vocab(with_added_tokens=False).values() if i not in added]
        self.text_vocab_size = max(plain) + 1 if plain else self.vocab_size
        ids = [tok.token_to_id(s) for s in self._EOS]
        self.eos_id = next((i for i in ids if i is not None), None)
        unk = [tok.token_to_id(s) for s in self._UNK]
        self.unk_id = next((i for i in unk if i is not None), None)
        encode = getattr(tok, "encode_batch_fast", None) or tok.encode_batch  # fast: no offsets
        self._encode = partial(encode, add_special_tokens=False)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=np.int32) for e in self._encode(texts)]


def load_tokenizer(spec: str) -> ByteTokenizer | HFTokenizer:
    """``"bytes"``, a tokenizer.json file, or a HF hub repo id with a tokenizer.json (HF cache first;
    no download when offline). Failures -> UserError saying what to fetch and where."""
    if spec == BYTES:
        return ByteTokenizer()
    from tokenizers import Tokenizer

    path = Path(spec).expanduser()
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise missing_data(
                f"tokenizer file {spec!r}", path, "train or download a tokenizers tokenizer.json and pass its path"
            )
        return HFTokenizer(Tokenizer.from_file(str(path)), spec)
    try:
        from huggingface_hub import hf_hub_download

        file = hf_hub_download(spec, "tokenizer.json", local_files_only=offline())
    except Exception as exc:  # offline cache miss, network error, unknown repo
        raise UserError(
            f"tokenizer {spec!r} is not available ({type(exc).__name__}): expected "
            f"tokenizer.json of hub repo {spec!r} in the Hugging Face cache (HF_HOME); with network run "
            f"`hf download {spec} tokenizer.json` (or unset OPTBENCH_OFFLINE/HF_HUB_OFFLINE), or pass "
            f"tokenizer=/path/to/tokenizer.json"
        ) from None
    return HFTokenizer(Tokenizer.from_file(file), spec)


def embedding_rows(config_vocab: int | None, tok: ByteTokenizer | HFTokenizer) -> int:
    """The embedding size for a model config with vocabulary ``config_vocab`` (None: the tokenizer's)
    and tokenizer ``tok``: the config's whenever the ids plain text can produce (and the end-of-text
    id) fit it, else the tokenizer's size rounded up to a multiple of 64."""
    if config_vocab is None:
        return tok.vocab_size
    eos_fits = tok.eos_id is None or tok.eos_id < config_vocab
    if tok.text_vocab_size <= config_vocab and eos_fits:
        return config_vocab
    return -(-tok.vocab_size // 64) * 64


def _remap(ids: np.ndarray, vocab: int, fallback: int) -> np.ndarray:
    """Ids the embedding cannot hold (added tokens beyond the config vocab) -> ``fallback``."""
    if ids.size and ids.max() >= vocab:
        ids = np.where(ids >= vocab, fallback, ids).astype(np.int32)
    return ids


# --------------------------------------------------------------------------------------------------
# Streamed hub corpora


@dataclass(frozen=True)
class HubCorpus:
    """A streamed corpus: its hub id, config, splits and file patterns (hub layout, reused locally)."""

    repo: str
    config: str
    folder: str  # <data_dir>/<folder>/ holds a local copy in the hub layout
    builder: str  # datasets packaged builder for the files: parquet | json
    train_glob: str
    heldout_split: str | None  # None: carve val/test from the head of train
    heldout_glob: str | None

    def how_to_fetch(self, root: Path) -> str:
        patterns = " ".join(f'"{g}"' for g in (self.train_glob, self.heldout_glob) if g)
        return (
            f"with network, unset OPTBENCH_OFFLINE/HF_DATASETS_OFFLINE/HF_HUB_OFFLINE to stream it, or "
            f"pre-download (some of) the files: `hf download {self.repo} --repo-type dataset --include "
            f"{patterns} --local-dir {root / self.folder}` (or into the HF cache, HF_HOME)"
        )


HUB_CORPORA = {
    "fineweb-edu": HubCorpus(
        "HuggingFaceFW/fineweb-edu", "sample-10BT", "fineweb-edu", "parquet", "sample/10BT/*.parquet", None, None
    ),
    "c4": HubCorpus(
        "allenai/c4", "en", "c4", "json", "en/c4-train.*.json.gz", "validation", "en/c4-validation.*.json.gz"
    ),
}


def _local_files(corpus: HubCorpus, root: Path) -> tuple[list[str], list[str]] | None:
    """(train files, held-out files) of a local copy, from the data dir or the HF hub cache."""

    def find(base: Path) -> tuple[list[str], list[str]] | None:
        train = sorted(glob.glob(str(base / corpus.train_glob)))
        held = sorted(glob.glob(str(base / corpus.heldout_glob))) if corpus.heldout_glob else []
        if train and (held or corpus.heldout_glob is None):
            return train, held
        return None

    found = find(root / corpus.folder)
    if found:
        return found
    try:
        from huggingface_hub import snapshot_download

        patterns = [g for g in (corpus.train_glob, corpus.heldout_glob) if g]
        snap = snapshot_download(corpus.repo, repo_type="dataset", allow_patterns=patterns, local_files_only=True)
    except Exception:  # not in the cache: that is the common case, not an error
        return None
    return find(Path(snap))


def _hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", errors="replace"), digest_size=8).digest()


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


def hub_source(corpus: HubCorpus, files: tuple[list[str], list[str]] | None) -> StreamSource:
    """Stream ``corpus`` from local files (same code path as the hub) or from the hub itself."""

    def open_split(split: str):
        import datasets

        if files is not None:
            data_files = files[0] if split == "train" else files[1]
            try:
                ds = datasets.load_dataset(corpus.builder, data_files={split: data_files}, split=split, streaming=True)
            except Exception as exc:  # empty or corrupt local files: say which
                raise UserError(
                    f"cannot read the local copy of {corpus.repo} ({split}: {data_files[0]}"
                    f"{' ...' if len(data_files) > 1 else ''}): {type(exc).__name__} {exc}; "
                    f"re-download it or remove it"
                ) from None
        else:
            ds = datasets.load_dataset(corpus.repo, name=corpus.config, split=split, streaming=True)
        return ds.select_columns(["text"])

    held = corpus.heldout_split or "train"
    return StreamSource(
        partial(open_split, "train"), partial(open_split, held), carve=corpus.heldout_split is None, name=corpus.repo
    )


def pack_rows(
    docs: Iterable[np.ndarray], ctx: int, eos_id: int | None, carry: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Concatenate documents (each followed by ``eos_id``) and cut rows of ``ctx + 1`` tokens with
    stride ``ctx`` (the last token of a row is the first of the next, so every token is a target once).
    """
    buf = [carry] if carry is not None and carry.size else []
    have = sum(b.size for b in buf)
    eos = np.asarray([eos_id], dtype=np.int32) if eos_id is not None else None
    for ids in docs:
        buf.append(ids)
        have += ids.size
        if eos is not None:
            buf.append(eos)
            have += 1
        if have >= ctx + 1:
            flat = np.concatenate(buf)
            n = (flat.size - 1) // ctx
            idx = np.arange(n)[:, None] * ctx + np.arange(ctx + 1)[None, :]
            yield from flat[idx]
            rest = flat[n * ctx :]
            buf, have = [rest], rest.size


def _tokenized(
    records: Iterable[Mapping[str, Any]],
    tok,
    vocab: int,
    chunk: int = 256,
    skip: frozenset[bytes] = frozenset(),
    hashes: list[bytes] | None = None,
) -> Iterator[np.ndarray]:
    """Token arrays of the records' ``text``, tokenised ``chunk`` documents at a time (the Rust
    tokenizer parallelises a batch); documents whose content hash is in ``skip`` are dropped."""
    fallback = tok.unk_id if tok.unk_id is not None and tok.unk_id < vocab else (tok.eos_id or 0)
    texts: list[str] = []

    def flush():
        for ids in tok.encode_batch(texts):
            yield _remap(ids, vocab, fallback)
        texts.clear()

    for rec in records:
        text = rec["text"]
        if not isinstance(text, str) or not text:
            continue
        if skip or hashes is not None:
            h = _hash(text)
            if h in skip:
                continue
            if hashes is not None:
                hashes.append(h)
        texts.append(text)
        if len(texts) >= chunk:
            yield from flush()
    if texts:
        yield from flush()


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
    docs = _tokenized(records, tok, vocab, chunk=1, hashes=hashes)
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


DATASETS = (
    text.PYDOC,
    Dataset("path:<file>", "a local text file (byte-level tokens, or tokenizer=FILE.json)", offline=True),
    Dataset(
        "fineweb-edu",
        "HuggingFaceFW/fineweb-edu sample-10BT, streamed; val/test carved from the stream head",
        fetch="streamed by HF datasets, or a local copy in <data_dir>/fineweb-edu or the HF hub cache",
    ),
    Dataset(
        "c4",
        "allenai/c4 en, streamed; val/test from its validation split",
        fetch="streamed by HF datasets, or a local copy in <data_dir>/c4 or the HF hub cache",
    ),
)


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
            docs = _tokenized(records, self.tok, self.vocab, skip=self.skip)
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


# --------------------------------------------------------------------------------------------------
# Locating and loading


@dataclass(frozen=True)
class TokenKey:
    """What to load: the corpus (with its local hub files, or a ``path:`` file's identity), the
    tokenizer, the config's vocabulary, and the row shape of the held-out splits."""

    dataset: str
    tokenizer: str
    config_vocab: int | None
    ctx: int
    val_tokens: int
    files: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    stamp: tuple = ()


@dataclass(frozen=True, eq=False)
class Tokens:
    """A loaded corpus: the tokenizer and the model's vocabulary, and either the tokenised offline
    corpus (``train`` + ``heldout`` rows) or a ``stream`` source for a hub corpus."""

    tok: Any
    vocab: int
    train: np.ndarray | None = None
    heldout: Mapping[str, np.ndarray] | None = None
    stream: StreamSource | None = None


def locate(
    dataset: str, data_dir: Path, tokenizer: str, config_vocab: int | None, ctx: int, val_tokens: int
) -> TokenKey:
    """Find the corpus before anything heavy: a hub corpus's local copy (the data dir, then the HF hub
    cache; streamed from the hub when none and online), or a ``path:`` file; else a UserError naming
    what to fetch and where."""
    root, files, stamp = Path(data_dir), None, ()
    if dataset in HUB_CORPORA:
        corpus = HUB_CORPORA[dataset]
        found = _local_files(corpus, root)
        if found is None and offline():
            raise missing_data(
                f"{dataset} ({corpus.repo}, config {corpus.config}) and offline",
                root / corpus.folder / corpus.train_glob,
                corpus.how_to_fetch(root),
            )
        files = None if found is None else (tuple(found[0]), tuple(found[1]))
    elif dataset.startswith("path:"):
        path = Path(dataset[len("path:") :]).expanduser()
        if not path.is_file():
            raise missing_data(
                f"text file for dataset {dataset!r}", path, "pass an existing UTF-8 text file as path:/abs/file.txt"
            )
        st = path.stat()
        stamp = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    return TokenKey(dataset, tokenizer, config_vocab, ctx, val_tokens, files, stamp)


def load(key: TokenKey) -> Tokens:
    """The tokenizer, and the tokenised offline corpus or the stream source (use through
    ``harness.task.load_data``: once per process)."""
    tok = load_tokenizer(key.tokenizer)
    vocab = embedding_rows(key.config_vocab, tok)
    if key.dataset in HUB_CORPORA:
        files = None if key.files is None else (list(key.files[0]), list(key.files[1]))
        return Tokens(tok, vocab, stream=hub_source(HUB_CORPORA[key.dataset], files))
    if key.dataset.startswith("path:"):
        docs = [text.read_text_file(key.dataset[len("path:") :], key.dataset, strict=False)]
    else:
        docs = text.pydoc_documents()
    train, held = split_corpus(corpus_tokens(docs, tok, vocab), key.ctx, key.val_tokens)
    for array in (train, *held.values()):
        array.setflags(write=False)  # shared through the cache: never mutated
    return Tokens(tok, vocab, train=train, heldout=held)


# --------------------------------------------------------------------------------------------------
# Offline corpora


def corpus_tokens(docs: list[str], tok, vocab: int) -> np.ndarray:
    """All documents tokenised, each followed by the end-of-document id."""
    arrays = list(_tokenized(({"text": d} for d in docs), tok, vocab))
    if tok.eos_id is not None:
        eos = np.asarray([tok.eos_id], dtype=np.int32)
        arrays = [x for a in arrays for x in (a, eos)]
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32)


def split_corpus(tokens: np.ndarray, ctx: int, val_tokens: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Contiguous 90 / 5 / 5 % split; val and test cut into rows of ctx + 1 (stride ctx), at most
    ``val_tokens`` tokens each."""
    n = tokens.size
    n_train = int(n * 0.9)
    n_held = (n - n_train) // 2
    held = {}
    for i, split in enumerate(("val", "test")):
        part = tokens[n_train + i * n_held : n_train + (i + 1) * n_held]
        rows = min((part.size - 1) // ctx, max(1, -(-val_tokens // ctx)))
        if rows < 1:
            raise UserError(
                f"text too short: the {split} split has {part.size} tokens, need at least "
                f"{ctx + 1} (ctx {ctx}); use a longer file"
            )
        idx = np.arange(rows)[:, None] * ctx + np.arange(ctx + 1)[None, :]
        held[split] = part[idx]
    return tokens[:n_train], held
