"""``lstm_lm``: a 2-layer LSTM language model trained with truncated BPTT, at character level (the
Softsign paper's next-character prediction task, arXiv 2605.31371; metric: next-character accuracy
``char_acc``, extra: bits per character ``bpc``) or word level (metric: ``perplexity``).

Data layout (the standard "batchify" of pytorch/examples ``word_language_model``): the training token
stream is cut into ``batch_size`` contiguous columns; a batch is the next window of ``bptt`` tokens of
every column, so window k+1 continues window k in each column. The LSTM state is carried from one
window to the next and detached in between (truncated BPTT). Every pass over the training stream
("epoch") starts at a random offset in [0, bptt) drawn from the data generator, so windows are not
always cut at the same places; the first window of an epoch resets the state. Evaluation runs the whole
split in the same layout from a zero state.

Carried state: ``Task.loss(model, batch)`` has no state argument, so the detached state of the last
training window lives on the model module itself (``LSTMLanguageModel.carried_state``, set by
``loss``; DDP/compile wrappers are looked through). A batch says when the stream restarts
(``Window.reset``) and the state is dropped then. ``evaluate`` never reads or writes it, so evaluating
in the middle of training does not disturb the carried training state. Consequence: ``loss`` must be
called once per batch, in stream order (the harness loop does).

Corpora (``dataset``):
  ``pydoc``          CPython's ``pydoc_data.topics`` help text: ~465k characters of real English
                     prose bundled with every Python; contiguous 95 / 2.5 / 2.5 % train/val/test.
  ``path:<file>``    any local UTF-8 text file, same contiguous split.
  ``wikitext2``, ``wikitext103``  WikiText raw (HF ``Salesforce/wikitext``), its own splits.
  ``nli``            the paper's corpus, HF ``MoritzLaurer/multilingual-NLI-26lang-2mil7``: the 26
                     ``<lang>_mnli`` splits (one per language). ``nli:<split>[,<split>...]`` picks
                     splits, e.g. ``nli:de_mnli,fr_anli``. Text of a row = premise + "\\n" + hypothesis
                     + "\\n"; val/test (1 % each) are carved by a hash of the premise, so rows sharing
                     a premise never straddle splits (PROTOCOL.md section 3).
  ``hf:<id>[:<config>]``  any HF dataset (or local dataset folder) with a ``text`` column or
                     ``premise``/``hypothesis`` columns; its ``validation``/``test`` splits when both
                     exist, else a 98/1/1 row-hash carve of ``train``.
HF downloads go to ``<data_dir>/hf`` (``datasets.load_dataset(..., cache_dir=...)``); ``load_dataset``
prepares every split of a repo on first use (for the NLI corpus all 130 of them), later runs read the
cache. ``make()`` reads and encodes the corpus (the vocabulary size fixes the model); the two most
recent encoded corpora stay cached in the process, so a tuning worker pays for it once.

Vocabulary: characters (Unicode code points) or whitespace-separated words (``<eos>`` ends each
non-blank line) seen in the training split, the ``vocab_size`` most frequent kept (0 = all), id 0 is
the unknown symbol (``<unk>``) for everything else, including val/test symbols never seen in train.

Parameter roles: LSTM ``weight_ih``/``weight_hh`` (the 4 gates stacked, as torch stores them) are
``matrix``; the embedding is ``embedding``; the decoder weight is ``head`` unless tied to the
embedding, in which case the shared tensor appears once, as ``embedding``; all biases are ``vector``.

Sizes: ``tiny`` (the first 36k / 2k / 2k characters of the train / val / test text, 32 hidden units,
20 steps; tests), ``small`` (full pydoc, char level, hidden 128, batch 16 x bptt 64, 120 steps: about
3.5-4.5 s of CPU time on one thread, val char_acc ~0.53 with AdamW lr 1e-2 against 0.23 for the best
constant guess), ``paper`` (inferred; PROTOCOL.md section 3 knows no Softsign sizes): hidden 1024,
tied embeddings, bptt 256 and batch 64 (the nanoGPT shakespeare-char context/batch), 5,000 steps
(82M characters: about one pass over the ~1e8 characters estimated for the 26 ``*_mnli`` splits,
650k pairs, so nothing is seen twice and dropout is 0), a
4,096-character vocabulary cap (the CJK scripts alone bring thousands of rare symbols), gradient
clipping 1.0.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import UserError, missing_data, unknown
from harness.paths import data_dir as resolve_data_dir
from harness.paths import offline
from harness.task import Metric, Task, roles_by_module

DESCRIPTION = ("2-layer LSTM language model with truncated BPTT: next-character accuracy (Softsign NCP) "
               "or word-level perplexity")
SIZES = ("tiny", "small", "paper")
DATASETS = {
    "pydoc": "CPython's pydoc_data.topics help text, ~465k chars of English (offline, ships with Python)",
    "path:<file>": "a local UTF-8 text file, contiguous 95/2.5/2.5 % split (offline)",
    "wikitext2": "WikiText-2 raw, HF Salesforce/wikitext wikitext-2-raw-v1 (downloads)",
    "wikitext103": "WikiText-103 raw, HF Salesforce/wikitext wikitext-103-raw-v1 (downloads)",
    "nli": "the paper's multilingual NLI text: the 26 <lang>_mnli splits of "
           "MoritzLaurer/multilingual-NLI-26lang-2mil7 (downloads the corpus)",
    "nli:<split>[,<split>...]": "chosen splits of that corpus, e.g. nli:de_mnli,fr_anli (downloads)",
    "hf:<id>[:<config>]": "any HF dataset or local dataset folder with a 'text' (or premise/hypothesis) "
                          "column (downloads unless local)",
}
DEFAULT_DATASET = {"tiny": "pydoc", "small": "pydoc", "paper": "nli"}
# None = the size's preset (see _PRESETS); the resolved values go into the run record.
OPTIONS: dict[str, Any] = {
    "level": "char",       # "char" (metric char_acc, max) or "word" (metric perplexity, min)
    "vocab_size": None,    # keep the K most frequent train symbols (+ <unk>); 0 = keep all
    "hidden": None,        # LSTM hidden size
    "embed": None,         # embedding size (default = hidden; must equal hidden when tied)
    "layers": 2,           # stacked LSTM layers
    "tied": True,          # share the embedding and the decoder weight (Press & Wolf 2017)
    "dropout": None,       # on embeddings, between LSTM layers and before the decoder
    "batch_size": None,    # parallel columns of the token stream
    "bptt": None,          # window length (truncated BPTT)
}

LEVELS = ("char", "word")
WIKITEXT_REPO = "Salesforce/wikitext"
NLI_REPO = "MoritzLaurer/multilingual-NLI-26lang-2mil7"
NLI_LANGUAGES = ("ar", "bn", "de", "es", "fa", "fr", "he", "hi", "id", "it", "ja", "ko", "mr", "nl", "pl",
                 "ps", "pt", "ru", "sv", "sw", "ta", "tr", "uk", "ur", "vi", "zh")
NLI_DEFAULT_SPLITS = tuple(f"{lang}_mnli" for lang in NLI_LANGUAGES)
UNK = "<unk>"
EOS = "<eos>"

# Per size: model/batch presets, step budget, eval cadence. Measured for small (1 CPU thread): see
# the test file and the task's report.
_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 32, "batch_size": 8, "bptt": 16, "dropout": 0.0, "steps": 20, "eval_every": 10},
    "small": {"hidden": 128, "batch_size": 16, "bptt": 64, "dropout": 0.0, "steps": 120, "eval_every": 40},
    "paper": {"hidden": 1024, "batch_size": 64, "bptt": 256, "dropout": 0.0, "steps": 5000,
              "eval_every": 500},
}
_VOCAB_PRESET = {("char", "tiny"): 0, ("char", "small"): 0, ("char", "paper"): 4096,
                 ("word", "tiny"): 32768, ("word", "small"): 32768, ("word", "paper"): 32768}
# Steps-to-target thresholds, only where the corpus is the size's default one (elsewhere unknown).
_TARGETS = {("small", "pydoc"): 0.45, ("paper", "nli"): 0.55}
_TINY_CHARS = (36_000, 2_000, 2_000)  # train/val/test characters kept at size tiny
_CONTIGUOUS_SPLIT = (0.95, 0.025)       # train, val fractions of a single text (rest is test)
_HASH_SPLIT_PERCENT = 1                 # val and test each get 1 % of rows when carved by hash


# --------------------------------------------------------------------------------------------------
# Model


class LSTMLanguageModel(nn.Module):
    """Embedding -> stacked LSTM -> linear decoder (optionally tied to the embedding).

    ``forward(tokens, state)`` takes ``(batch, time)`` token ids and an optional ``(h, c)`` state and
    returns ``(logits, new_state)``. ``carried_state`` holds the detached state between training
    windows (written by the task's ``loss``, see the module docstring).
    """

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, dropout: float, tied: bool):
        super().__init__()
        if tied and embed != hidden:
            raise ValueError(f"tied embeddings need embed == hidden, got {embed} and {hidden}")
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden, vocab)
        if tied:
            self.decoder.weight = self.embedding.weight
        self.tied = tied
        self.carried_state: tuple[torch.Tensor, torch.Tensor] | None = None

    def get_extra_state(self) -> dict[str, Any]:
        """The carried training state travels with ``state_dict()``: a checkpoint taken between two
        windows resumes the stream with the same state (bit-identical resume)."""
        return {"carried_state": self.carried_state}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        carried = state.get("carried_state")
        device = self.embedding.weight.device
        self.carried_state = None if carried is None else tuple(t.to(device) for t in carried)

    def forward(self, tokens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        x = self.dropout(self.embedding(tokens))
        out, state = self.lstm(x, state)
        return self.decoder(self.dropout(out)), state

    @torch.no_grad()
    def reset_parameters_from(self, generator: torch.Generator) -> None:
        """Initialise every parameter from ``generator`` only, with torch's own default
        distributions: embedding N(0, 1); LSTM weights and biases and an untied decoder weight
        U(-1/sqrt(hidden), 1/sqrt(hidden)); decoder bias 0.

        Why not the U(-0.1, 0.1) embedding of pytorch/examples' word LM: with it the embedded input
        is so small next to the recurrent weights that a char model sits on the unigram plateau for
        the whole ``small`` budget (measured: val char_acc 0.23 after 120 AdamW steps vs 0.53 with
        N(0, 1))."""
        nn.init.normal_(self.embedding.weight, 0.0, 1.0, generator=generator)
        bound = 1.0 / math.sqrt(self.lstm.hidden_size)
        for p in self.lstm.parameters():
            nn.init.uniform_(p, -bound, bound, generator=generator)
        if not self.tied:
            nn.init.uniform_(self.decoder.weight, -bound, bound, generator=generator)
        nn.init.zeros_(self.decoder.bias)
        self.carried_state = None


def _core(model: nn.Module) -> nn.Module:
    """The LSTMLanguageModel behind DDP (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while not isinstance(model, LSTMLanguageModel):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            raise TypeError(f"expected an LSTMLanguageModel (possibly wrapped), got {type(model).__name__}")
        model = inner
    return model


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
                yield Window(rows[:, start:start + bptt], rows[:, start + 1:start + 1 + bptt], k == 0)

    def eval_columns(self, split: str) -> torch.Tensor:
        """The split in the batchify layout, with fewer columns when it is too short for one window."""
        tokens = self.splits[split]
        columns = max(1, min(self.batch_size, (tokens.numel() - 1) // self.bptt))
        return batchify(tokens, columns)


def _loss(model: nn.Module, batch: Window) -> torch.Tensor:
    """Mean next-token cross entropy of one window, continuing from the carried state."""
    core = _core(model)
    state = None if batch.reset else core.carried_state
    if state is not None and state[0].shape[1] != batch.inputs.shape[0]:
        state = None  # a different column count (e.g. a new stream): nothing to continue
    logits, new_state = model(batch.inputs.long(), state)
    core.carried_state = (new_state[0].detach(), new_state[1].detach())
    return F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.long().flatten())


def _evaluate_split(model: nn.Module, data: TextStream, split: str, level: str) -> dict[str, float]:
    """Cross entropy and top-1 accuracy over the whole split, state carried across windows from zero
    (never touching the training ``carried_state``). Sums stay on the device; one sync at the end."""
    if split not in data.splits:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(data.splits)}")
    cols = data.eval_columns(split)
    length = cols.shape[1]
    device = cols.device
    nll = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    state = None
    for start in range(0, length - 1, data.bptt):
        stop = min(start + data.bptt, length - 1)
        targets = cols[:, start + 1:stop + 1].long()
        logits, state = model(cols[:, start:stop].long(), state)
        logits = logits.float()
        nll += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").double()
        correct += (logits.argmax(-1) == targets).sum()
        count += targets.numel()
    loss = float(nll.item()) / count
    acc = float(correct.item()) / count
    if level == "char":
        return {"char_acc": acc, "bpc": loss / math.log(2.0), "loss": loss}
    return {"perplexity": math.exp(loss) if loss < 700 else math.inf, "word_acc": acc, "loss": loss}


# --------------------------------------------------------------------------------------------------
# Corpora: text splits -> vocabulary -> int32 id tensors


@dataclass(frozen=True, eq=False)
class Corpus:
    """Encoded splits (1-D int32 CPU tensors) and the vocabulary (id -> symbol, id 0 = ``<unk>``)."""

    vocab: tuple[str, ...]
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


@dataclass(frozen=True)
class _Source:
    kind: str                      # "pydoc" | "path" | "hf" | "nli"
    repo: str = ""                 # HF id or local dataset folder (kinds hf / nli)
    config: str | None = None
    splits: tuple[str, ...] = ()   # HF splits to read (kind nli)
    path: str = ""                 # kind path


def _parse_dataset(name: str) -> _Source:
    """Dataset name -> source; UserError naming the valid forms for anything else."""
    if not isinstance(name, str) or not name:
        raise unknown("dataset", name, DATASETS)
    if name == "pydoc":
        return _Source("pydoc")
    if name == "wikitext2":
        return _Source("hf", WIKITEXT_REPO, "wikitext-2-raw-v1")
    if name == "wikitext103":
        return _Source("hf", WIKITEXT_REPO, "wikitext-103-raw-v1")
    if name == "nli":
        return _Source("nli", NLI_REPO, None, NLI_DEFAULT_SPLITS)
    if name.startswith("nli:"):
        splits = tuple(s.strip() for s in name[4:].split(",") if s.strip())
        if not splits:
            raise UserError(f"dataset {name!r} names no split; use e.g. nli:de_mnli,fr_mnli")
        for split in splits:
            match = re.fullmatch(r"([a-z]{2})_([a-z]+)", split)
            if not match or match.group(1) not in NLI_LANGUAGES:
                raise UserError(
                    f"bad NLI split {split!r} in dataset {name!r}: splits are <lang>_<source> (e.g. "
                    f"de_mnli, zh_anli) with lang one of {', '.join(NLI_LANGUAGES)}")
        return _Source("nli", NLI_REPO, None, splits)
    if name.startswith("hf:"):
        repo, _, config = name[3:].partition(":")
        if not repo:
            raise UserError(f"dataset {name!r} names no HF dataset; use hf:<id>[:<config>], e.g. "
                            "hf:Salesforce/wikitext:wikitext-2-raw-v1")
        return _Source("hf", repo, config or None)
    if name.startswith("path:"):
        path = name[5:]
        if not path:
            raise UserError("dataset 'path:' names no file; use path:/some/file.txt")
        return _Source("path", path=path)
    raise unknown("dataset", name, DATASETS)


def _pydoc_text() -> str:
    from pydoc_data.topics import topics

    # Sorted keys: the same text on every Python that ships the same topics.
    return "\n".join(topics[key] for key in sorted(topics))


def _contiguous_split(text: str) -> tuple[str, str, str]:
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
    raise UserError(f"{where} has no 'text' column and no 'premise'/'hypothesis' columns; "
                    f"its columns: {', '.join(sorted(columns))}")


@contextlib.contextmanager
def _hf_offline_mode(enabled: bool):
    """Force ``datasets``/``huggingface_hub`` offline for the duration (OPTBENCH_OFFLINE alone does not
    reach them: they read their own variables at import time)."""
    if not enabled:
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved = [(mod, name, getattr(mod, name)) for mod, name in
             ((datasets.config, "HF_HUB_OFFLINE"), (hub_constants, "HF_HUB_OFFLINE"))
             if hasattr(mod, name)]
    for mod, name, _ in saved:
        setattr(mod, name, True)
    try:
        yield
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)


def _load_hf(source: _Source, dataset_name: str, cache_dir: Path) -> tuple[str, str, str]:
    """Read an HF dataset through ``datasets.load_dataset`` (hub id or local folder) into
    (train, val, test) text. Any failure to get it becomes a UserError saying how to fetch it."""
    import datasets

    local = Path(source.repo).expanduser().exists()
    try:
        with _hf_offline_mode(offline() and not local):
            if source.kind == "nli":
                loaded = datasets.load_dataset(source.repo, source.config, split=list(source.splits),
                                               cache_dir=str(cache_dir))
                parts = dict(zip(source.splits, loaded))
            else:
                parts = dict(datasets.load_dataset(source.repo, source.config, cache_dir=str(cache_dir)))
    except UserError:
        raise
    except Exception as exc:  # hub/network/cache errors come in many types across datasets versions
        call = (f"datasets.load_dataset({source.repo!r}"
                + (f", {source.config!r}" if source.config else "")
                + (f", split={list(source.splits)!r}" if source.kind == "nli" else "")
                + f", cache_dir={str(cache_dir)!r})")
        why = f"{type(exc).__name__}: {str(exc)[:300]}"
        if offline():
            how = (f"offline mode is on; run once with network access (unset OPTBENCH_OFFLINE, HF_HUB_OFFLINE, "
                   f"HF_DATASETS_OFFLINE) so that {call} downloads it, or copy an HF datasets cache holding "
                   f"it to {cache_dir} ({why})")
        else:
            how = (f"loading failed ({why}); check the dataset id, config and split names, then retry "
                   f"{call} with network access, or copy an HF datasets cache holding it to {cache_dir}")
        raise missing_data(f"dataset {dataset_name!r}", cache_dir, how) from exc

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
            "".join(_rows(parts[s], f"split {s!r} of {source.repo}")[0]) for s in ("train", "validation", "test"))
    if "train" not in parts:
        raise UserError(f"HF dataset {source.repo!r} has no 'train' split; its splits: {', '.join(sorted(parts))}")
    return _carve(*_rows(parts["train"], f"split 'train' of {source.repo}"))


def _load_text(source: _Source, dataset_name: str, data_dir: Path) -> tuple[str, str, str]:
    if source.kind == "pydoc":
        return _contiguous_split(_pydoc_text())
    if source.kind == "path":
        path = Path(source.path).expanduser()
        if not path.is_file():
            raise missing_data(f"text file for dataset {dataset_name!r}", path,
                               "give the path of an existing UTF-8 text file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{path} is not UTF-8 text: {exc}") from None
        return _contiguous_split(text)
    return _load_hf(source, dataset_name, data_dir / "hf")


def _code_points(text: str) -> np.ndarray:
    """Unicode code points of ``text`` as uint32, vectorised (no per-character Python)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _encode_chars(splits: tuple[str, str, str], cap: int) -> Corpus:
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


def _encode_words(splits: tuple[str, str, str], cap: int) -> Corpus:
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
# trial reads and encodes the corpus once.
_CORPUS_CACHE: OrderedDict[tuple, Corpus] = OrderedDict()
_CORPUS_CACHE_SIZE = 2


def load_corpus(dataset: str, size: str, level: str, vocab_size: int, data_dir: str | os.PathLike | None = None
                ) -> Corpus:
    """The encoded corpus for ``dataset`` at ``size`` (tiny keeps a slice of every split).

    Raises UserError for unknown names, missing files and corpora too small to split.
    """
    source = _parse_dataset(dataset)
    root = resolve_data_dir(data_dir)
    stamp: tuple = ()
    if source.kind == "path":
        path = Path(source.path).expanduser()
        if path.is_file():
            st = path.stat()
            stamp = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    key = (source, str(root), size == "tiny", level, vocab_size, stamp)
    if key in _CORPUS_CACHE:
        _CORPUS_CACHE.move_to_end(key)
        return _CORPUS_CACHE[key]
    splits = _load_text(source, dataset, root)
    if size == "tiny":
        splits = tuple(text[:n] for text, n in zip(splits, _TINY_CHARS))  # type: ignore[assignment]
    for name, text in zip(("train", "val", "test"), splits):
        if not text.strip():
            raise UserError(f"dataset {dataset!r} gives an empty {name} split; it needs more text")
    corpus = (_encode_chars if level == "char" else _encode_words)(splits, vocab_size)  # type: ignore[arg-type]
    _CORPUS_CACHE[key] = corpus
    while len(_CORPUS_CACHE) > _CORPUS_CACHE_SIZE:
        _CORPUS_CACHE.popitem(last=False)
    return corpus


# --------------------------------------------------------------------------------------------------
# Options and make()


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserError(f"invalid lstm_lm option {name}={value!r} (must be an integer >= {minimum})")
    return value


def resolve_options(size: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """User options over ``OPTIONS``, size presets filled in, every value checked (UserError)."""
    bad = sorted(set(options) - set(OPTIONS))
    if bad:
        raise UserError(f"unknown lstm_lm option(s) {', '.join(map(repr, bad))}; known: {', '.join(OPTIONS)}")
    opts = {**OPTIONS, **options}
    preset = _PRESETS[size]
    if opts["level"] not in LEVELS:
        raise unknown("level", opts["level"], LEVELS)
    for name in ("hidden", "batch_size", "bptt", "dropout"):
        if opts[name] is None:
            opts[name] = preset[name]
    if opts["vocab_size"] is None:
        opts["vocab_size"] = _VOCAB_PRESET[(opts["level"], size)]
    if opts["embed"] is None:
        opts["embed"] = opts["hidden"]
    for name, minimum in (("vocab_size", 0), ("hidden", 1), ("embed", 1), ("layers", 1), ("batch_size", 1),
                          ("bptt", 1)):
        _check_int(name, opts[name], minimum)
    if not isinstance(opts["tied"], bool):
        raise UserError(f"invalid lstm_lm option tied={opts['tied']!r} (must be true or false)")
    dropout = opts["dropout"]
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
        raise UserError(f"invalid lstm_lm option dropout={dropout!r} (must lie in [0, 1))")
    opts["dropout"] = float(dropout)
    if opts["tied"] and opts["embed"] != opts["hidden"]:
        raise UserError(f"tied embeddings need embed == hidden (got embed={opts['embed']}, "
                        f"hidden={opts['hidden']}); set tied=false or drop embed")
    return opts


def make(size: str = "tiny", dataset: str | None = None, data_dir: str | os.PathLike | None = None,
         **options: Any) -> Task:
    """Build the ``lstm_lm`` task (see the module docstring for corpora, layout and sizes).

    Raises UserError for an unknown size/dataset/option or bad value (before any loading), for
    missing data (offline, or a failed download), and for corpora too small for one window.
    """
    if size not in SIZES:
        raise unknown("size", size, SIZES)
    dataset = DEFAULT_DATASET[size] if dataset is None else dataset
    _parse_dataset(dataset)
    opts = resolve_options(size, options)
    preset = _PRESETS[size]
    level = opts["level"]

    corpus = load_corpus(dataset, size, level, opts["vocab_size"], data_dir)
    batch_size, bptt = opts["batch_size"], opts["bptt"]
    if corpus.train.numel() // batch_size < 2 * bptt:
        raise UserError(
            f"dataset {dataset!r} has {corpus.train.numel()} training tokens: too few for batch_size="
            f"{batch_size} columns of at least 2*bptt={2 * bptt} tokens; lower batch_size or bptt")
    if corpus.val.numel() < 2 or corpus.test.numel() < 2:
        raise UserError(f"dataset {dataset!r} has fewer than 2 val or test tokens; it needs more text")
    vocab = len(corpus.vocab)
    model_args = (vocab, opts["embed"], opts["hidden"], opts["layers"], opts["dropout"], opts["tied"])

    def make_model(generator: torch.Generator) -> nn.Module:
        model = LSTMLanguageModel(*model_args)
        model.reset_parameters_from(generator)
        return model

    def make_data(device: torch.device) -> TextStream:
        return TextStream(corpus, torch.device(device), batch_size, bptt)

    def evaluate(model: nn.Module, data: TextStream, split: str) -> dict[str, float]:
        return _evaluate_split(model, data, split, level)

    def roles(model: nn.Module) -> dict[str, list[nn.Parameter]]:
        core = _core(model)
        # Embedding claims a tied weight before the head does: the shared tensor appears once.
        return roles_by_module(core, head=core.decoder)

    if level == "char":
        metric, penalty = Metric("char_acc", "max"), 0.0
        target = _TARGETS.get((size, dataset))
    else:
        # A uniform guess has perplexity = vocabulary size: the worst plausible finite value.
        metric, penalty, target = Metric("perplexity", "min"), float(vocab), None
    return Task(
        name="lstm_lm",
        dataset=dataset,
        size=size,
        metric=metric,
        steps=preset["steps"],
        eval_every=preset["eval_every"],
        make_model=make_model,
        make_data=make_data,
        loss=_loss,
        evaluate=evaluate,
        roles=roles,
        penalty=penalty,
        target=target,
        schedule="cosine",
        warmup_fraction=0.05,
        grad_clip=1.0,
        batch_size=batch_size,
        options=opts,
        description=DESCRIPTION,
    )
