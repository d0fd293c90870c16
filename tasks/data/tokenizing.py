"""Tokenizers and tokenising for decoder language models: text -> token ids -> packed rows.

Tokenizers: ``bytes`` (UTF-8 bytes + an end-of-document id), a ``tokenizers`` tokenizer.json, or a hub
id whose tokenizer.json is in the HF cache (downloaded when allowed). ``embedding_rows`` sizes a model's
embedding for a tokenizer; ids the embedding cannot hold are remapped to ``<unk>`` (or end-of-text).
Documents are tokenised in chunks (the Rust tokenizer parallelises a batch), optionally skipped by
content hash, and packed into rows of ``ctx + 1`` tokens with stride ``ctx``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UserError, missing_data
from harness.paths import offline

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
# Documents to ids, ids to rows


def _hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", errors="replace"), digest_size=8).digest()


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


def tokenized(
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
