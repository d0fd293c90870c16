"""Text corpora: CPython's bundled pydoc prose, local files (``path:``), HF datasets (WikiText, the
multilingual NLI corpus of the Softsign paper, any ``hf:`` set); character and word vocabularies; the
"batchify" stream of truncated-BPTT language models.

Corpora (``dataset``):
  ``pydoc``          CPython's ``pydoc_data.topics`` help text: ~465k characters of real English
                     prose bundled with every Python; contiguous 95 / 2.5 / 2.5 % train/val/test.
  ``path:<file>``    any local UTF-8 text file, same contiguous split.
  ``wikitext2``, ``wikitext103``  WikiText raw (HF ``Salesforce/wikitext``), its own splits.
  ``nli``            the paper's corpus, HF ``MoritzLaurer/multilingual-NLI-26lang-2mil7``: the 26
                     ``<lang>_mnli`` splits (one per language). ``nli:<split>[,<split>...]`` picks
                     splits, e.g. ``nli:de_mnli,fr_anli``. Text of a row = premise + "\\n" + hypothesis
                     + "\\n"; val/test (1 % each) are carved by a hash of the premise, so rows sharing
                     a premise never straddle splits (docs/protocol.md#lstm-language-model).
  ``hf:<id>[:<config>]``  any HF dataset (or local dataset folder) with a ``text`` column or
                     ``premise``/``hypothesis`` columns; its ``validation``/``test`` splits when both
                     exist, else a 98/1/1 row-hash carve of ``train``.
HF downloads go to ``<data_dir>/hf`` (``datasets.load_dataset(..., cache_dir=...)``); ``load_dataset``
prepares every split of a repo on first use (for the NLI corpus all 130 of them), later runs read the
cache.

Vocabulary: characters (Unicode code points) or whitespace-separated words (``<eos>`` ends each
non-blank line) seen in the training split, the ``vocab_size`` most frequent kept (0 = all), id 0 is
the unknown symbol (``<unk>``) for everything else, including val/test symbols never seen in train.

Stream layout (the standard "batchify" of pytorch/examples ``word_language_model``): the training token
stream is cut into ``batch_size`` contiguous columns; a batch is the next window of ``bptt`` tokens of
every column, so window k+1 continues window k in each column. Every pass over the training stream
starts at a random offset in [0, bptt) drawn from the data generator, so windows are not always cut at
the same places; the first window of a pass says so (``Window.reset``).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from harness.errors import UserError, missing_data, unknown
from harness.paths import offline
from harness.task import Dataset

LEVELS = ("char", "word")
WIKITEXT_REPO = "Salesforce/wikitext"
NLI_REPO = "MoritzLaurer/multilingual-NLI-26lang-2mil7"
NLI_LANGUAGES = (
    "ar",
    "bn",
    "de",
    "es",
    "fa",
    "fr",
    "he",
    "hi",
    "id",
    "it",
    "ja",
    "ko",
    "mr",
    "nl",
    "pl",
    "ps",
    "pt",
    "ru",
    "sv",
    "sw",
    "ta",
    "tr",
    "uk",
    "ur",
    "vi",
    "zh",
)
NLI_DEFAULT_SPLITS = tuple(f"{lang}_mnli" for lang in NLI_LANGUAGES)
UNK = "<unk>"
EOS = "<eos>"
_CONTIGUOUS_SPLIT = (0.95, 0.025)  # train, val fractions of a single text (rest is test)
_HASH_SPLIT_PERCENT = 1  # val and test each get 1 % of rows when carved by hash

PYDOC = Dataset(
    "pydoc", "CPython's bundled pydoc_data.topics prose, ~465k characters of English (ships with Python)", offline=True
)
PATH = Dataset("path:<file>", "a local UTF-8 text file", offline=True)
DATASETS = (
    PYDOC,
    PATH,
    Dataset(
        "wikitext2",
        "WikiText-2 raw (Salesforce/wikitext wikitext-2-raw-v1), its own splits",
        fetch="HF datasets downloads it into <data_dir>/hf",
    ),
    Dataset(
        "wikitext103",
        "WikiText-103 raw (Salesforce/wikitext wikitext-103-raw-v1), its own splits",
        fetch="HF datasets downloads it into <data_dir>/hf",
    ),
    Dataset(
        "nli",
        "the Softsign paper's multilingual NLI text: the 26 <lang>_mnli splits of "
        "MoritzLaurer/multilingual-NLI-26lang-2mil7",
        fetch="HF datasets downloads the corpus into <data_dir>/hf",
    ),
    Dataset(
        "nli:<split>[,<split>...]",
        "chosen splits of that corpus, e.g. nli:de_mnli,fr_anli",
        fetch="HF datasets downloads the corpus into <data_dir>/hf",
    ),
    Dataset(
        "hf:<id>[:<config>]",
        "any HF dataset or local dataset folder with a 'text' (or premise/hypothesis) column",
        fetch="HF datasets downloads it into <data_dir>/hf (unless local)",
    ),
)


@dataclass(frozen=True, eq=False)
class Corpus:
    """Encoded splits (1-D int32 CPU tensors) and the vocabulary (id -> symbol, id 0 = ``<unk>``)."""

    vocab: tuple[str, ...]
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


@dataclass(frozen=True)
class TextSource:
    kind: str  # "pydoc" | "path" | "hf" | "nli"
    repo: str = ""  # HF id or local dataset folder (kinds hf / nli)
    config: str | None = None
    splits: tuple[str, ...] = ()  # HF splits to read (kind nli)
    path: str = ""  # kind path


def parse_dataset(name: str) -> TextSource:
    """Dataset name -> source; UserError naming the valid forms for anything else."""
    if not isinstance(name, str) or not name:
        raise unknown("dataset", name, [d.name for d in DATASETS])
    if name == "pydoc":
        return TextSource("pydoc")
    if name == "wikitext2":
        return TextSource("hf", WIKITEXT_REPO, "wikitext-2-raw-v1")
    if name == "wikitext103":
        return TextSource("hf", WIKITEXT_REPO, "wikitext-103-raw-v1")
    if name == "nli":
        return TextSource("nli", NLI_REPO, None, NLI_DEFAULT_SPLITS)
    if name.startswith("nli:"):
        splits = tuple(s.strip() for s in name[4:].split(",") if s.strip())
        if not splits:
            raise UserError(f"dataset {name!r} names no split; use e.g. nli:de_mnli,fr_mnli")
        for split in splits:
            match = re.fullmatch(r"([a-z]{2})_([a-z]+)", split)
            if not match or match.group(1) not in NLI_LANGUAGES:
                raise UserError(
                    f"bad NLI split {split!r} in dataset {name!r}: splits are <lang>_<source> (e.g. "
                    f"de_mnli, zh_anli) with lang one of {', '.join(NLI_LANGUAGES)}"
                )
        return TextSource("nli", NLI_REPO, None, splits)
    if name.startswith("hf:"):
        repo, _, config = name[3:].partition(":")
        if not repo:
            raise UserError(
                f"dataset {name!r} names no HF dataset; use hf:<id>[:<config>], e.g. "
                "hf:Salesforce/wikitext:wikitext-2-raw-v1"
            )
        return TextSource("hf", repo, config or None)
    if name.startswith("path:"):
        path = name[5:]
        if not path:
            raise UserError("dataset 'path:' names no file; use path:/some/file.txt")
        return TextSource("path", path=path)
    raise unknown("dataset", name, [d.name for d in DATASETS])


def pydoc_documents() -> list[str]:
    """CPython's bundled help topics (real English prose), in a fixed order (sorted keys: the same
    text on every Python that ships the same topics)."""
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def pydoc_text() -> str:
    """The help topics as one text, joined by newlines."""
    return "\n".join(pydoc_documents())


def read_text_file(path: str | Path, dataset: str, strict: bool = True) -> str:
    """A local text file for dataset ``dataset`` (``path:<file>``): UTF-8, strictly (a UserError for
    other bytes) or with undecodable bytes replaced; a missing file is a UserError naming it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise missing_data(
            f"text file for dataset {dataset!r}", path, "pass an existing UTF-8 text file as path:/abs/file.txt"
        )
    if not strict:
        return path.read_text(encoding="utf-8", errors="replace")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text: {exc}") from None


def contiguous_split(text: str) -> tuple[str, str, str]:
    """Head for training, then val, then test (as enwik8/text8 are split): no text shared."""
    a = int(len(text) * _CONTIGUOUS_SPLIT[0])
    b = a + int(len(text) * _CONTIGUOUS_SPLIT[1])
    return text[:a], text[a:b], text[b:]


def _hash_bucket(key: str) -> int:
    """A stable bucket in [0, 100) from a row's text (blake2b, independent of PYTHONHASHSEED)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little") % 100


def _carve(rows: list[str], keys: list[str]) -> tuple[str, str, str]:
    """Rows -> (train, val, test) text by a hash of each row's key: bucket 0 -> test, 1 -> val."""
    parts: tuple[list[str], list[str], list[str]] = ([], [], [])
    for row, key in zip(rows, keys):
        bucket = _hash_bucket(key)
        parts[2 if bucket < _HASH_SPLIT_PERCENT else 1 if bucket < 2 * _HASH_SPLIT_PERCENT else 0].append(row)
    return "".join(parts[0]), "".join(parts[1]), "".join(parts[2])


def _rows(ds: Any, where: str) -> tuple[list[str], list[str]]:
    """(row texts, hash keys) of one HF split: NLI pairs (key = premise) or a ``text`` column."""
    columns = set(ds.column_names)
    # ``ds[name][:]``: a plain list in one batch read (datasets >= 4 returns a lazy Column object
    # whose iteration reads row by row; older versions return the list itself).
    if {"premise", "hypothesis"} <= columns:
        premises, hypotheses = ds["premise"][:], ds["hypothesis"][:]
        rows = [f"{p or ''}\n{h or ''}\n" for p, h in zip(premises, hypotheses)]
        return rows, [p or "" for p in premises]
    if "text" in columns:
        texts = [t or "" for t in ds["text"][:]]
        return texts, texts
    raise UserError(
        f"{where} has no 'text' column and no 'premise'/'hypothesis' columns; its columns: {', '.join(sorted(columns))}"
    )


@contextlib.contextmanager
def _hf_offline_mode(enabled: bool):
    """Force ``datasets``/``huggingface_hub`` offline for the duration (OPTBENCH_OFFLINE alone does not
    reach them: they read their own variables at import time)."""
    if not enabled:
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved = [
        (mod, name, getattr(mod, name))
        for mod, name in ((datasets.config, "HF_HUB_OFFLINE"), (hub_constants, "HF_HUB_OFFLINE"))
        if hasattr(mod, name)
    ]
    for mod, name, _ in saved:
        setattr(mod, name, True)
    try:
        yield
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)


def _hf_parts(source: TextSource, dataset_name: str, cache_dir: Path) -> dict[str, Any]:
    """The splits of an HF dataset through ``datasets.load_dataset`` (hub id or local folder; it
    downloads and prepares on first use, then reads its cache). Any failure to get it becomes a
    UserError saying how to fetch it."""
    import datasets

    local = Path(source.repo).expanduser().exists()
    try:
        with _hf_offline_mode(offline() and not local):
            if source.kind == "nli":
                loaded = datasets.load_dataset(
                    source.repo, source.config, split=list(source.splits), cache_dir=str(cache_dir)
                )
                parts = dict(zip(source.splits, loaded))
            else:
                parts = dict(datasets.load_dataset(source.repo, source.config, cache_dir=str(cache_dir)))
    except UserError:
        raise
    except Exception as exc:  # hub/network/cache errors come in many types across datasets versions
        call = (
            f"datasets.load_dataset({source.repo!r}"
            + (f", {source.config!r}" if source.config else "")
            + (f", split={list(source.splits)!r}" if source.kind == "nli" else "")
            + f", cache_dir={str(cache_dir)!r})"
        )
        why = f"{type(exc).__name__}: {str(exc)[:300]}"
        if offline():
            how = (
                f"offline mode is on; run once with network access (unset OPTBENCH_OFFLINE, HF_HUB_OFFLINE, "
                f"HF_DATASETS_OFFLINE) so that {call} downloads it, or copy an HF datasets cache holding "
                f"it to {cache_dir} ({why})"
            )
        else:
            how = (
                f"loading failed ({why}); check the dataset id, config and split names, then retry "
                f"{call} with network access, or copy an HF datasets cache holding it to {cache_dir}"
            )
        raise missing_data(f"dataset {dataset_name!r}", cache_dir, how) from exc
    return parts


def _hf_text(source: TextSource, parts: Mapping[str, Any]) -> tuple[str, str, str]:
    """(train, val, test) text of loaded HF splits: NLI splits carved by premise hash; a dataset's own
    validation/test splits when it has both, else a row-hash carve of its train split."""
    if source.kind == "nli":
        rows: list[str] = []
        keys: list[str] = []
        for split in source.splits:
            r, k = _rows(parts[split], f"split {split!r} of {source.repo}")
            rows += r
            keys += k
        return _carve(rows, keys)
    if "validation" in parts and "test" in parts and "train" in parts:
        return tuple(  # type: ignore[return-value]
            "".join(_rows(parts[s], f"split {s!r} of {source.repo}")[0]) for s in ("train", "validation", "test")
        )
    if "train" not in parts:
        raise UserError(f"HF dataset {source.repo!r} has no 'train' split; its splits: {', '.join(sorted(parts))}")
    return _carve(*_rows(parts["train"], f"split 'train' of {source.repo}"))


def _code_points(text: str) -> np.ndarray:
    """Unicode code points of ``text`` as uint32, vectorised (no per-character Python)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def encode_chars(splits: tuple[str, str, str], cap: int) -> Corpus:
    train_cp = _code_points(splits[0])
    counts = np.bincount(train_cp, minlength=1)
    seen = np.flatnonzero(counts)
    if cap and seen.size > cap:
        # Most frequent first, ties by code point; keep the top ``cap``.
        order = np.lexsort((seen, -counts[seen]))
        seen = np.sort(seen[order[:cap]])
    lut = np.zeros(0x110000, dtype=np.int32)  # every code point -> id; 0 = <unk>
    lut[seen] = np.arange(1, seen.size + 1, dtype=np.int32)
    vocab = (UNK, *(chr(int(c)) for c in seen))
    ids = [torch.from_numpy(lut[cp]) for cp in (train_cp, _code_points(splits[1]), _code_points(splits[2]))]
    return Corpus(vocab, *ids)


def _words(text: str) -> list[str]:
    """Whitespace tokens, ``<eos>`` after every non-blank line (pytorch/examples word LM, minus the
    empty lines that would only add trivially predictable ``<eos>`` tokens)."""
    out: list[str] = []
    for line in text.split("\n"):
        tokens = line.split()
        if tokens:
            out += tokens
            out.append(EOS)
    return out


def encode_words(splits: tuple[str, str, str], cap: int) -> Corpus:
    import pandas as pd

    train_words = _words(splits[0])
    codes, uniques = pd.factorize(np.asarray(train_words, dtype=object))
    counts = np.bincount(codes, minlength=len(uniques))
    # Most frequent first, ties by first occurrence: deterministic.
    order = np.lexsort((np.arange(len(uniques)), -counts))
    if cap:
        order = order[:cap]
    kept = [str(w) for w in uniques[order]]
    index = pd.Index(kept)

    def encode(words: list[str]) -> torch.Tensor:
        found = index.get_indexer(np.asarray(words, dtype=object)) + 1  # -1 (unknown) -> 0
        return torch.from_numpy(found.astype(np.int32))

    return Corpus((UNK, *kept), encode(train_words), encode(_words(splits[1])), encode(_words(splits[2])))


# A couple of encoded corpora stay in memory, so a tuning worker that builds the same task for every


# --------------------------------------------------------------------------------------------------
# Locating and loading an encoded corpus


@dataclass(frozen=True)
class CorpusKey:
    """What to load: the source, the data dir, the vocabulary, and at most ``max_chars`` characters
    of (train, val, test) when set; ``stamp`` is a ``path:`` file's identity, so an edit reloads."""

    dataset: str
    source: TextSource
    root: str
    level: str
    vocab_size: int
    max_chars: tuple[int, int, int] | None = None
    stamp: tuple = ()


def locate_corpus(
    dataset: str, data_dir: Path, level: str, vocab_size: int, max_chars: tuple[int, int, int] | None = None
) -> CorpusKey:
    """Check the corpus is there: a ``path:`` file exists; an HF dataset is in (or, when allowed,
    downloaded into) ``<data_dir>/hf``. Raises UserError naming what to fetch."""
    source = parse_dataset(dataset)
    stamp: tuple = ()
    if source.kind == "path":
        path = Path(source.path).expanduser()
        if not path.is_file():
            raise missing_data(
                f"text file for dataset {dataset!r}", path, "give the path of an existing UTF-8 text file"
            )
        st = path.stat()
        stamp = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    elif source.kind in ("hf", "nli"):
        _hf_parts(source, dataset, Path(data_dir) / "hf")
    return CorpusKey(dataset, source, str(data_dir), level, vocab_size, max_chars, stamp)


def load_corpus(key: CorpusKey) -> Corpus:
    """The encoded corpus of ``key`` (use through ``harness.task.load_data``: once per process).
    Raises UserError for a split left empty."""
    source = key.source
    if source.kind == "pydoc":
        splits = contiguous_split(pydoc_text())
    elif source.kind == "path":
        splits = contiguous_split(read_text_file(source.path, key.dataset))
    else:
        splits = _hf_text(source, _hf_parts(source, key.dataset, Path(key.root) / "hf"))
    if key.max_chars is not None:
        splits = tuple(text[:n] for text, n in zip(splits, key.max_chars))  # type: ignore[assignment]
    for name, text in zip(("train", "val", "test"), splits):
        if not text.strip():
            raise UserError(f"dataset {key.dataset!r} gives an empty {name} split; it needs more text")
    return (encode_chars if key.level == "char" else encode_words)(splits, key.vocab_size)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# The truncated-BPTT stream

# --------------------------------------------------------------------------------------------------
# Data stream


class Window(NamedTuple):
    """One training batch: ``inputs``/``targets`` are ``(batch, bptt)`` int32 ids (targets shifted by
    one token); ``reset`` is True for the first window of a pass, where the carried state is dropped."""

    inputs: torch.Tensor
    targets: torch.Tensor
    reset: bool


def batchify(tokens: torch.Tensor, columns: int) -> torch.Tensor:
    """Cut a 1-D stream into ``columns`` contiguous rows (the tail that does not fill a row is
    dropped): row b is tokens[b*n:(b+1)*n], so consecutive windows of a row are consecutive text."""
    n = tokens.numel() // columns
    return tokens[: n * columns].view(columns, n)


class TextStream:
    """The encoded splits on one device, in the batchify layout (see the module docstring)."""

    def __init__(self, corpus: Corpus, device: torch.device, batch_size: int, bptt: int):
        self.batch_size, self.bptt = batch_size, bptt
        self.vocab_size = len(corpus.vocab)
        self.train = batchify(corpus.train.to(device), batch_size)
        self.splits = {"val": corpus.val.to(device), "test": corpus.test.to(device)}

    def batches(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> Iterator[Window]:
        """Endless windows over the training columns; each pass starts at an offset in [0, bptt)
        drawn from ``generator``. Under DDP each rank takes every ``world_size``-th column."""
        if self.batch_size % world_size:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by world_size {world_size}")
        rows = self.train[rank::world_size]
        length, bptt = rows.shape[1], self.bptt
        while True:
            offset = int(torch.randint(0, bptt, (1,), generator=generator, device=generator.device).item())
            # Only full windows (static shapes); make() guarantees length >= 2 * bptt, so >= 1 window.
            for k, start in enumerate(range(offset, length - bptt, bptt)):
                yield Window(rows[:, start : start + bptt], rows[:, start + 1 : start + 1 + bptt], k == 0)

    def eval_columns(self, split: str) -> torch.Tensor:
        """The split in the batchify layout, with fewer columns when it is too short for one window."""
        tokens = self.splits[split]
        columns = max(1, min(self.batch_size, (tokens.numel() - 1) // self.bptt))
        return batchify(tokens, columns)
