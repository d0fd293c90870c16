"""Token corpora for decoder language models: offline corpora split at the token level, streamed hub
corpora (FineWeb-Edu, C4), and the ``locate`` / ``load`` pair of the ``llm`` task.

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

Tokenizers (``tasks.data.tokenizing``, with the packing into rows): ``bytes`` (UTF-8 bytes + an
end-of-document id), a ``tokenizers`` tokenizer.json, or a hub id whose tokenizer.json is in the HF
cache (downloaded when allowed). The device-side streams and their DDP sharding:
``tasks.data.token_streams``.
"""

from __future__ import annotations

import glob
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UserError, missing_data
from harness.paths import offline
from harness.task import Dataset
from tasks.data import text
from tasks.data.token_streams import StreamSource
from tasks.data.tokenizing import embedding_rows, load_tokenizer, tokenized

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
    arrays = list(tokenized(({"text": d} for d in docs), tok, vocab))
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
