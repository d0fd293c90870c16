"""Llama-style decoder language-model pretraining (the Softsign paper's 130M / 360M / 720M LLM runs).

Model: pre-norm decoder with RMSNorm, rotary position embeddings (RoPE, rotate-half convention as in
Hugging Face ``LlamaModel``), SwiGLU MLP, causal ``torch.nn.functional.scaled_dot_product_attention``,
no biases, optional grouped-query attention (``n_kv_heads < n_heads``) and optional tied input/output
embeddings. Init: N(0, 0.02) everywhere (GaLore / HF Llama ``initializer_range``), residual output
projections scaled by 1/sqrt(2 * layers) (GPT-2, nanoGPT, epfml llm-baselines), RMSNorm gains 1.

Named model configs (``MODEL_CONFIGS``, option ``model``; see PROTOCOL.md section 4):

  name   d     layers heads(kv) FFN   vocab / tied    ctx  params  source
  tiny   32    2      4 (2)     64    tokenizer/no    32   --      CPU tests (GQA on purpose)
  small  64    2      4 (4)     128   tokenizer/yes   64   --      CPU demo, byte-level
  20M    384   4      6         1024  32000 / yes     256  19.4M   [I] quick GPU checks, T5 tokenizer
  130M   768   12     12        2048  32000 / no      256  134M    GaLore configs/llama_130m.json
  360M   960   32     15 (5)    2560  49152 / yes     256  362M    SmolLM2-360M config.json
  720M   2048  12     16        5632  50304 / yes     512  720M    epfml llm-optimizer-benchmark 720m

Sizes map to models: tiny -> ``tiny``, small -> ``small``, paper -> ``130M`` (the GaLore C4 recipe:
T5 tokenizer, batch 512 x 256 tokens, 20k steps = 2.62B tokens, warmup 10 %, cosine to 0.1x).
Other paper models are ``--set task.model=360M`` / ``task.model=720M`` (FineWeb-Edu by default).
``batch_size`` is the global batch of one optimizer step; option ``grad_accum`` splits each rank's share into
micro-batches (the loop accumulates their gradients; DDP syncs only on the last). Defaults: 130M 4
(128 x 256 tokens per micro-batch; the full 512 x 256 batch would hold ~100 GB of activations with fp32
logits), 360M 8, 720M 32 (epfml's 62 x 32 accumulation). Raise it if a GPU runs out of memory.

Vocabulary: a config with a vocab (20M..720M) keeps it whenever the ids plain text can produce fit
(T5's 100 ``<extra_id_*>`` added tokens are remapped to ``<unk>``; GPT-2's 50257 pads to 50304), so
parameter counts match the published models; otherwise, and for tiny/small, the model uses the
tokenizer's size (rounded up to a multiple of 64 for the named configs).

Data (``DATASETS``):
  * ``pydoc`` (default for tiny/small): CPython's bundled ``pydoc_data.topics`` (79 documents of real
    English prose, ~465k characters), offline, byte-level tokens (256 bytes + an end-of-document id).
  * ``path:FILE``: any local text file, same treatment.
    Offline corpora are split contiguously at the token level: 90 % train, then 5 % val, 5 % test.
  * ``fineweb-edu`` (``HuggingFaceFW/fineweb-edu``, config ``sample-10BT``) and ``c4`` (``allenai/c4``,
    ``en``): streamed with HF ``datasets`` (``streaming=True``), tokenised on the fly with a
    ``tokenizers`` tokenizer, documents joined by the tokenizer's end-of-text id and packed into rows
    of ``ctx + 1`` tokens. A local copy in the hub's own layout under the data dir
    (``<data_dir>/fineweb-edu/sample/10BT/*.parquet``, ``<data_dir>/c4/en/c4-*.json.gz``) or in the
    Hugging Face hub cache is used first, so runs work offline. Held-out data: C4's ``validation``
    split; FineWeb-Edu has only ``train``, so val/test are carved from the head of the unshuffled stream
    and those documents are skipped (by content hash) in training. Val and test each hold ``val_tokens``
    tokens (GaLore evaluates on 10M tokens of C4 validation).

Step budget: ``steps = tokens // (batch_size * ctx)`` (option ``tokens``).

DDP: ``TaskData.batches(generator, rank, world_size)`` shards by rank. The generator must be seeded the
same on every rank. In-memory corpora draw one global batch per step and give rank r rows
``[r * b, (r + 1) * b)`` (b = batch_size / world_size), so a W-process run follows the same trajectory
as one process with the whole batch. Streamed corpora give each rank a disjoint share of the documents
(``datasets.distributed.split_dataset_by_node`` or every W-th record), each rank packing its own rows.
``evaluate`` splits the held-out rows over ranks and all-reduces (sum, count) itself, so every rank
returns the exact global value.
"""

from __future__ import annotations

import glob
import hashlib
import math
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import UserError, missing_data, unknown
from harness.paths import data_dir as resolve_data_dir
from harness.paths import offline
from harness.task import SIZES, Metric, Task, roles_by_module

DESCRIPTION = ("Llama-style decoder LM pretraining (RMSNorm, RoPE, SwiGLU, SDPA; models tiny, small, 20M, 130M, "
               "360M, 720M); val loss / perplexity")

DATASETS = {
    "pydoc": "CPython's bundled pydoc_data.topics prose (~465k chars), offline, byte-level tokens",
    "path:FILE": "any local text file, offline (byte-level tokens, or tokenizer=FILE.json)",
    "fineweb-edu": "HuggingFaceFW/fineweb-edu sample-10BT, streamed via HF datasets (downloads); "
                   "val/test carved from the stream head",
    "c4": "allenai/c4 en, streamed via HF datasets (downloads); val/test from its validation split",
}
DEFAULT_DATASET = {"tiny": "pydoc", "small": "pydoc", "paper": "c4"}

# None = taken from the model config (or, for ``tokenizer``, from the dataset: bytes when offline).
OPTIONS: dict[str, Any] = {
    "model": None,        # a MODEL_CONFIGS name; default by size (tiny, small, 130M)
    "tokenizer": None,    # "bytes", a tokenizer.json path, or a HF hub id (e.g. t5-base)
    "tokens": None,       # training token budget; steps = tokens // (batch_size * ctx)
    "batch_size": None,   # sequences per optimizer step, global (split over DDP ranks)
    "tied": None,         # override the config's tied input/output embeddings
    "val_tokens": None,   # held-out tokens in each of val and test
    "grad_accum": None,   # micro-batches per step (the loop splits each rank's batch; memory, not math)
}

BYTES = "bytes"
_PYDOC = "pydoc"
_PATH_PREFIX = "path:"


# --------------------------------------------------------------------------------------------------
# Model configs
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelConfig:
    """Architecture plus the training recipe that goes with it (PROTOCOL.md section 4)."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn: int
    vocab: int | None          # None: use the tokenizer's vocabulary size as is
    tied: bool
    ctx: int
    batch_size: int            # sequences per optimizer step (global)
    tokens: int                # default training token budget
    val_tokens: int            # held-out tokens per split (val, test)
    tokenizer: str             # default tokenizer for streamed corpora
    dataset: str               # default dataset when this model is picked at paper size
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.1
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    eval_every: int = 1000
    grad_accum: int = 1        # default micro-batches per step (fits the published batch on one GPU)
    source: str = ""

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


MODEL_CONFIGS: dict[str, ModelConfig] = {
    c.name: c
    for c in (
        # tiny: a 20-step run in well under a second on one CPU thread; GQA exercised on purpose.
        ModelConfig("tiny", 32, 2, 4, 2, 64, None, False, 32, batch_size=8, tokens=40 * 8 * 32,
                    val_tokens=4096, tokenizer=BYTES, dataset=_PYDOC, eval_every=10,
                    source="CPU tests"),
        # small: the demo size, ~3-6 s per run on one CPU thread on pydoc bytes.
        # (~4 s of CPU time for 150 steps + 4 evals; val loss 5.55 -> ~2.9 nats/byte, below the
        # 3.26 of a unigram byte model).
        ModelConfig("small", 64, 2, 4, 4, 128, None, True, 64, batch_size=16, tokens=150 * 16 * 64,
                    val_tokens=8192, tokenizer=BYTES, dataset=_PYDOC, eval_every=50,
                    source="CPU demo"),
        ModelConfig("20M", 384, 4, 6, 6, 1024, 32000, True, 256, batch_size=256, tokens=400_000_000,
                    val_tokens=1_000_000, tokenizer="t5-base", dataset="c4", warmup_fraction=0.1,
                    source="[I] small GaLore-style sibling for quick GPU checks"),
        ModelConfig("130M", 768, 12, 12, 12, 2048, 32000, False, 256, batch_size=512,
                    tokens=20_000 * 512 * 256, val_tokens=10_000_000, tokenizer="t5-base", dataset="c4",
                    warmup_fraction=0.1, norm_eps=1e-6, grad_accum=4,
                    source="GaLore configs/llama_130m.json + scripts/benchmark_c4/llama_130m.sh"),
        # SmolLM2-360M architecture; recipe [I] GaLore llama_350m budget (60k steps x 131k tokens).
        ModelConfig("360M", 960, 32, 15, 5, 2560, 49152, True, 256, batch_size=512,
                    tokens=60_000 * 512 * 256, val_tokens=10_000_000,
                    tokenizer="HuggingFaceTB/SmolLM2-360M", dataset="fineweb-edu", warmup_fraction=0.1,
                    rope_theta=100_000.0, grad_accum=8,
                    source="HuggingFaceTB/SmolLM2-360M config.json; budget of GaLore llama_350m.sh"),
        # epfml 720M: 62 x 32 accumulation x 512 tokens ~ 1M tokens per step, 48k steps, 2k warmup.
        ModelConfig("720M", 2048, 12, 16, 16, 5632, 50304, True, 512, batch_size=62 * 32,
                    tokens=48_000 * 62 * 32 * 512, val_tokens=10_000_000, tokenizer="gpt2",
                    dataset="fineweb-edu", warmup_fraction=2000 / 48_000, min_lr_ratio=0.01,
                    grad_accum=32, source="epfml/llm-optimizer-benchmark scripts/720m"),
    )
}
SIZE_MODEL = {"tiny": "tiny", "small": "small", "paper": "130M"}


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    """x / rms(x) * g, computed in fp32 and returned in the input dtype (bf16-autocast safe)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight).to(x.dtype)


def rope_tables(head_dim: int, ctx: int, theta: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (ctx, head_dim) for rotate-half RoPE (Su et al. 2021; HF Llama layout)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    angles = torch.outer(torch.arange(ctx, dtype=torch.float32, device=device), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, hd) by position; fp32 math, result in x's dtype so SDPA sees one dtype."""
    x32 = x.float()
    half = x32.shape[-1] // 2
    rotated = torch.cat((-x32[..., half:], x32[..., :half]), dim=-1)
    return (x32 * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        kv_dim = cfg.n_kv_heads * cfg.head_dim
        # Separate projections (Llama / GaLore layout): Muon orthogonalises q, k, v one by one.
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, kv_dim, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, kv_dim, bias=False)
        self.o_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.n_kv_heads != self.n_heads:
            # GQA by broadcasting kv heads: works on every SDPA backend and torch version.
            rep = self.n_heads // self.n_kv_heads
            k = k[:, :, None].expand(B, self.n_kv_heads, rep, T, self.head_dim).reshape(B, self.n_heads, T, -1)
            v = v[:, :, None].expand(B, self.n_kv_heads, rep, T, self.head_dim).reshape(B, self.n_heads, T, -1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, D))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) (Shazeer 2020, as in Llama)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ffn, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.ffn, bias=False)
        self.down_proj = nn.Linear(cfg.ffn, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class Llama(nn.Module):
    """Decoder-only LM: ``forward(idx[B, T]) -> logits[B, T, vocab]`` (T <= ctx)."""

    def __init__(self, cfg: ModelConfig, vocab: int, tied: bool) -> None:
        super().__init__()
        if cfg.d_model % cfg.n_heads or cfg.n_heads % cfg.n_kv_heads or cfg.head_dim % 2:
            raise ValueError(f"model {cfg.name}: d_model/heads/kv_heads do not divide evenly")
        self.cfg, self.vocab, self.tied = cfg, vocab, tied
        self.embed = nn.Embedding(vocab, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, vocab, bias=False)
        if tied:
            self.lm_head.weight = self.embed.weight
        cos, sin = rope_tables(cfg.head_dim, cfg.ctx, cfg.rope_theta, device=self.embed.weight.device)
        # Non-persistent: derived from the config, never part of a checkpoint.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        if T > self.cfg.ctx:
            raise ValueError(f"sequence length {T} exceeds the model context {self.cfg.ctx}")
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.lm_head(self.norm(x))


def init_weights(model: Llama, generator: torch.Generator) -> None:
    """Draw every weight from ``generator`` only (deterministic): N(0, 0.02), residual outputs
    N(0, 0.02 / sqrt(2 L)), norm gains 1. Tied weights are drawn once (as the embedding)."""
    std = 0.02
    resid_std = std / math.sqrt(2 * model.cfg.n_layers)
    done: set[int] = set()
    for name, p in model.named_parameters():  # named_parameters() yields a tied weight once
        if id(p) in done:
            continue
        done.add(id(p))
        with torch.no_grad():
            if p.ndim == 1:
                p.fill_(1.0)
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, 0.0, resid_std, generator=generator)
            else:
                nn.init.normal_(p, 0.0, std, generator=generator)


def build_model(cfg: ModelConfig, vocab: int | None = None, tied: bool | None = None,
                generator: torch.Generator | None = None, device: str | torch.device | None = None) -> Llama:
    """Build ``cfg`` (on ``device``; "meta" builds without memory for parameter counts).

    ``vocab`` defaults to the config's; ``generator`` given -> weights initialised from it.
    """
    vocab = vocab if vocab is not None else cfg.vocab
    if vocab is None:
        raise ValueError(f"model {cfg.name} takes its vocabulary from the tokenizer; pass vocab=")
    with torch.device(device or "cpu"):
        model = Llama(cfg, vocab, cfg.tied if tied is None else tied)
    if generator is not None and str(device or "cpu") != "meta":
        init_weights(model, generator)
    return model


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, tied weights counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_roles(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Block Linear weights -> matrix, token embedding -> embedding, untied lm head -> head
    (tied: the shared weight once, as embedding), RMSNorm gains -> vector."""
    net = _unwrap(model)
    return roles_by_module(net, head=net.lm_head)


def matmul_params(model: Llama) -> int:
    """Parameters that take part in a matmul per token: block Linear weights + the lm head (counted
    even when tied, since the head matmul is computed). Excludes the embedding lookup and norm gains;
    this is N in the 6N flops-per-token estimate (Kaplan et al. 2020; PaLM appendix B)."""
    blocks = sum(p.numel() for n, p in model.blocks.named_parameters() if p.ndim == 2)
    return blocks + model.lm_head.weight.numel()


def flops_per_token(model: Llama, ctx: int) -> float:
    """Training flops per token: 6 N + 12 L d T (attention scores and values, fwd + bwd, counted over
    the full T x T matrix as PaLM does; causal kernels do about half of that attention work)."""
    cfg = model.cfg
    return 6.0 * matmul_params(model) + 12.0 * cfg.n_layers * cfg.d_model * ctx


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare module under DDP and/or torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


# --------------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------------

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
            raise missing_data(f"tokenizer file {spec!r}", path,
                               "train or download a tokenizers tokenizer.json and pass its path")
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


def model_vocab(cfg: ModelConfig, tok: ByteTokenizer | HFTokenizer) -> int:
    """The embedding size for ``cfg`` with ``tok`` (see the module docstring)."""
    if cfg.vocab is None:
        return tok.vocab_size
    eos_fits = tok.eos_id is None or tok.eos_id < cfg.vocab
    if tok.text_vocab_size <= cfg.vocab and eos_fits:
        return cfg.vocab
    return -(-tok.vocab_size // 64) * 64


def _remap(ids: np.ndarray, vocab: int, fallback: int) -> np.ndarray:
    """Ids the embedding cannot hold (added tokens beyond the config vocab) -> ``fallback``."""
    if ids.size and ids.max() >= vocab:
        ids = np.where(ids >= vocab, fallback, ids).astype(np.int32)
    return ids


# --------------------------------------------------------------------------------------------------
# Corpora
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HubCorpus:
    """A streamed corpus: its hub id, config, splits and file patterns (hub layout, reused locally)."""

    repo: str
    config: str
    folder: str                        # <data_dir>/<folder>/ holds a local copy in the hub layout
    builder: str                       # datasets packaged builder for the files: parquet | json
    train_glob: str
    heldout_split: str | None          # None: carve val/test from the head of train
    heldout_glob: str | None

    def how_to_fetch(self, root: Path) -> str:
        patterns = " ".join(f'"{g}"' for g in (self.train_glob, self.heldout_glob) if g)
        return (
            f"with network, unset OPTBENCH_OFFLINE/HF_DATASETS_OFFLINE/HF_HUB_OFFLINE to stream it, or "
            f"pre-download (some of) the files: `hf download {self.repo} --repo-type dataset --include "
            f"{patterns} --local-dir {root / self.folder}` (or into the HF cache, HF_HOME)"
        )


HUB_CORPORA = {
    "fineweb-edu": HubCorpus("HuggingFaceFW/fineweb-edu", "sample-10BT", "fineweb-edu", "parquet",
                             "sample/10BT/*.parquet", None, None),
    "c4": HubCorpus("allenai/c4", "en", "c4", "json", "en/c4-train.*.json.gz", "validation",
                    "en/c4-validation.*.json.gz"),
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
        snap = snapshot_download(corpus.repo, repo_type="dataset", allow_patterns=patterns,
                                 local_files_only=True)
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
                ds = datasets.load_dataset(corpus.builder, data_files={split: data_files}, split=split,
                                           streaming=True)
            except Exception as exc:  # empty or corrupt local files: say which
                raise UserError(f"cannot read the local copy of {corpus.repo} ({split}: {data_files[0]}"
                                f"{' ...' if len(data_files) > 1 else ''}): {type(exc).__name__} {exc}; "
                                f"re-download it or remove it") from None
        else:
            ds = datasets.load_dataset(corpus.repo, name=corpus.config, split=split, streaming=True)
        return ds.select_columns(["text"])

    held = corpus.heldout_split or "train"
    return StreamSource(partial(open_split, "train"), partial(open_split, held),
                        carve=corpus.heldout_split is None, name=corpus.repo)


def pack_rows(docs: Iterable[np.ndarray], ctx: int, eos_id: int | None,
              carry: np.ndarray | None = None) -> Iterator[np.ndarray]:
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
            rest = flat[n * ctx:]
            buf, have = [rest], rest.size


def _tokenized(records: Iterable[Mapping[str, Any]], tok, vocab: int, chunk: int = 256,
               skip: frozenset[bytes] = frozenset(), hashes: list[bytes] | None = None) -> Iterator[np.ndarray]:
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


def heldout_rows(records: Iterable[Mapping[str, Any]], tok, vocab: int, ctx: int, n_tokens: int,
                 splits: tuple[str, ...] = ("val", "test")) -> tuple[dict[str, np.ndarray], frozenset[bytes]]:
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
        raise UserError(f"held-out stream too short: need {need} rows of {ctx + 1} tokens "
                        f"({len(splits)} x val_tokens={n_tokens}), got {len(rows)}; lower val_tokens")
    out = {s: np.stack(rows[i * rows_per_split:(i + 1) * rows_per_split]) for i, s in enumerate(splits)}
    return out, frozenset(hashes)


# --------------------------------------------------------------------------------------------------
# Task data
# --------------------------------------------------------------------------------------------------

def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _local_batch(batch_size: int, world_size: int) -> int:
    if world_size < 1 or batch_size % world_size:
        raise UserError(f"batch_size {batch_size} is not divisible by world_size {world_size}; "
                        f"set the task option batch_size to a multiple of {world_size}")
    return batch_size // world_size


class _HeldOut:
    """Held-out rows (n, ctx + 1) per split, placed on the device once."""

    heldout: dict[str, torch.Tensor]
    batch_size: int


class InMemoryTokens(_HeldOut):
    """A whole tokenised corpus on the device; batches are random windows drawn from the generator."""

    def __init__(self, train: np.ndarray, heldout: Mapping[str, np.ndarray], ctx: int, batch_size: int,
                 device: torch.device) -> None:
        if train.size < ctx + 2:
            raise UserError(f"training text too short: {train.size} tokens for ctx {ctx}")
        self.ctx, self.batch_size, self.device = ctx, batch_size, torch.device(device)
        self.train = torch.from_numpy(np.ascontiguousarray(train, dtype=np.int32)).to(self.device)
        self.heldout = {k: torch.from_numpy(v.astype(np.int64)).to(self.device) for k, v in heldout.items()}
        self._offsets = torch.arange(ctx + 1, device=self.device)

    def batches(self, generator: torch.Generator, rank: int = 0, world_size: int = 1,
                start: int = 0) -> Iterator[tuple]:
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
            starts = torch.randint(0, high + 1, (self.batch_size,), generator=generator)[rank * b:(rank + 1) * b]
            if pin:
                starts = starts.pin_memory()
            starts = starts.to(self.device, non_blocking=True)
            rows = self.train[starts[:, None] + self._offsets].long()
            yield rows[:, :-1], rows[:, 1:]


class StreamedTokens(_HeldOut):
    """Training rows packed from a record stream on a background thread (tokenisation overlaps the
    step); held-out rows fixed at construction."""

    def __init__(self, source: StreamSource, tok, vocab: int, ctx: int, batch_size: int, val_tokens: int,
                 device: torch.device, prefetch: int = 8) -> None:
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
                raise UserError(f"{self.source.name}: rank {rank} of {world_size} got no training tokens "
                                f"(empty stream or every document held out)")
            epoch += 1

    @staticmethod
    def _emit(pending: list[np.ndarray], b: int, g: torch.Generator) -> Iterator[np.ndarray]:
        order = torch.randperm(len(pending), generator=g).numpy()
        stacked = np.stack(pending)[order]
        full = (len(pending) // b) * b
        for i in range(0, full, b):
            yield stacked[i:i + b]
        pending[:] = list(stacked[full:])

    def batches(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> Iterator[tuple]:
        """Endless (x, y) batches for this rank; order from ``generator`` only."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        rows = self.rows(seed, rank, world_size)
        source = _prefetch(rows, self.prefetch, pin=self.device.type == "cuda") if self.prefetch else (
            torch.from_numpy(r) for r in rows)
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
# Loss and evaluation
# --------------------------------------------------------------------------------------------------

def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy (fp32 logits, also under bf16 autocast)."""
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())


def evaluate(model: nn.Module, data: _HeldOut, split: str) -> dict[str, float]:
    """Token-mean cross-entropy on the split's held-out rows: ``val_loss``, ``loss`` and ``ppl``.

    Under torch.distributed each rank scores rows ``rank::world`` and (sum, count) is all-reduced
    here, so every rank returns the exact global value (the loop may average it again: a no-op).
    """
    if split not in data.heldout:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(sorted(data.heldout))}")
    net = _unwrap(model)  # no DDP collectives in eval; uneven per-rank row counts are fine
    rows = data.heldout[split]
    rank, world = _dist()
    mine = rows[rank::world]
    total = torch.zeros((), dtype=torch.float64, device=rows.device)
    for i in range(0, mine.shape[0], data.batch_size):
        chunk = mine[i:i + data.batch_size]
        logits = net(chunk[:, :-1])
        total += F.cross_entropy(logits.float().flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum").double()
    stats = torch.stack([total, torch.tensor(float(mine[:, 1:].numel()), dtype=torch.float64, device=rows.device)])
    if world > 1:
        torch.distributed.all_reduce(stats)
    loss_sum, count = stats.tolist()
    loss = loss_sum / count
    ppl = loss if math.isnan(loss) else math.exp(min(loss, 700.0))  # no OverflowError on a blow-up
    return {"val_loss": loss, "loss": loss, "ppl": ppl}


# --------------------------------------------------------------------------------------------------
# Offline corpora
# --------------------------------------------------------------------------------------------------

def pydoc_documents() -> list[str]:
    """CPython's bundled help topics (real English prose), in a fixed order."""
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


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
        part = tokens[n_train + i * n_held: n_train + (i + 1) * n_held]
        rows = min((part.size - 1) // ctx, max(1, -(-val_tokens // ctx)))
        if rows < 1:
            raise UserError(f"text too short: the {split} split has {part.size} tokens, need at least "
                            f"{ctx + 1} (ctx {ctx}); use a longer file")
        idx = np.arange(rows)[:, None] * ctx + np.arange(ctx + 1)[None, :]
        held[split] = part[idx]
    return tokens[:n_train], held


# --------------------------------------------------------------------------------------------------
# make()
# --------------------------------------------------------------------------------------------------

def _positive_int(name: str, value: Any) -> int:
    try:
        number = float(value) if isinstance(value, str) else value
        ok = isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number)
        ok = ok and number == int(number) and number >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UserError(f"invalid llm option {name}={value!r}: must be a positive integer")
    return int(number)


def _resolve_options(size: str, dataset: str | None, options: Mapping[str, Any]) -> tuple[ModelConfig, str, dict]:
    bad = sorted(set(options) - set(OPTIONS))
    if bad:
        raise UserError(f"unknown llm option(s) {', '.join(map(repr, bad))}; known: {', '.join(sorted(OPTIONS))}")
    if size not in SIZES:
        raise unknown("size", size, SIZES)
    opts = {**OPTIONS, **options}
    model = opts["model"] if opts["model"] is not None else SIZE_MODEL[size]
    if model not in MODEL_CONFIGS:
        raise unknown("llm model", model, MODEL_CONFIGS)
    cfg = MODEL_CONFIGS[model]
    if dataset is None:
        dataset = cfg.dataset if size == "paper" else DEFAULT_DATASET[size]
    if not (dataset in HUB_CORPORA or dataset == _PYDOC or dataset.startswith(_PATH_PREFIX)):
        raise unknown("dataset", dataset, DATASETS)
    tokenizer = opts["tokenizer"]
    if tokenizer is None:
        tokenizer = cfg.tokenizer if dataset in HUB_CORPORA else BYTES
    if not isinstance(tokenizer, str) or not tokenizer:
        raise UserError(f"invalid llm option tokenizer={tokenizer!r}: 'bytes', a tokenizer.json path or a hub id")
    tied = opts["tied"]
    if tied is not None and not isinstance(tied, bool):
        raise UserError(f"invalid llm option tied={tied!r}: must be true or false")
    batch = _positive_int("batch_size", opts["batch_size"] if opts["batch_size"] is not None else cfg.batch_size)
    tokens = _positive_int("tokens", opts["tokens"] if opts["tokens"] is not None else cfg.tokens)
    if tokens < batch * cfg.ctx:
        raise UserError(f"invalid llm option tokens={tokens}: less than one step of batch_size x ctx = "
                        f"{batch} x {cfg.ctx} = {batch * cfg.ctx} tokens")
    val_tokens = _positive_int("val_tokens", opts["val_tokens"] if opts["val_tokens"] is not None else cfg.val_tokens)
    accum = _positive_int("grad_accum", opts["grad_accum"] if opts["grad_accum"] is not None else cfg.grad_accum)
    if batch % accum:
        raise UserError(f"invalid llm option grad_accum={accum}: batch_size {batch} is not a multiple of it")
    resolved = {"model": model, "tokenizer": tokenizer, "tokens": tokens, "batch_size": batch,
                "tied": cfg.tied if tied is None else tied, "val_tokens": val_tokens, "grad_accum": accum}
    return cfg, dataset, resolved


def make(size: str = "tiny", dataset: str | None = None, data_dir: str | None = None, **options: Any) -> Task:
    """The llm task at ``size`` on ``dataset`` (see the module docstring for options and data)."""
    cfg, dataset, opts = _resolve_options(size, dataset, options)
    root = resolve_data_dir(data_dir)

    # Locate the data before anything heavy; fail with what to fetch and where.
    if dataset in HUB_CORPORA:
        corpus = HUB_CORPORA[dataset]
        files = _local_files(corpus, root)
        if files is None and offline():
            raise missing_data(
                f"{dataset} ({corpus.repo}, config {corpus.config}) and offline",
                root / corpus.folder / corpus.train_glob, corpus.how_to_fetch(root))
        source = hub_source(corpus, files)
        docs = None
    else:
        if dataset == _PYDOC:
            docs_fn: Callable[[], list[str]] = pydoc_documents
        else:
            path = Path(dataset[len(_PATH_PREFIX):]).expanduser()
            if not path.is_file():
                raise missing_data(f"text file for dataset {dataset!r}", path,
                                   "pass an existing UTF-8 text file as path:/abs/file.txt")
            docs_fn = partial(_read_text, path)
        source, docs = None, docs_fn

    tok = load_tokenizer(opts["tokenizer"])
    vocab = model_vocab(cfg, tok)
    ctx, batch = cfg.ctx, opts["batch_size"]
    steps = max(1, opts["tokens"] // (batch * ctx))

    def make_model(generator: torch.Generator) -> nn.Module:
        return build_model(cfg, vocab=vocab, tied=opts["tied"], generator=generator)

    def make_data(device: torch.device) -> _HeldOut:
        if source is not None:
            return StreamedTokens(source, tok, vocab, ctx, batch, opts["val_tokens"], device)
        train, held = split_corpus(corpus_tokens(docs(), tok, vocab), ctx, opts["val_tokens"])
        return InMemoryTokens(train, held, ctx, batch, device)

    uniform = math.log(vocab)
    return Task(
        name="llm",
        dataset=dataset,
        size=size,
        metric=Metric("val_loss", "min"),
        steps=steps,
        eval_every=min(cfg.eval_every, steps),
        make_model=make_model,
        make_data=make_data,
        loss=lm_loss,
        evaluate=evaluate,
        roles=model_roles,
        penalty=uniform,  # a model that learned nothing predicts uniformly
        target=_TARGETS.get((cfg.name, dataset, opts["tokenizer"])),
        schedule="cosine",
        warmup_fraction=cfg.warmup_fraction,
        min_lr_ratio=cfg.min_lr_ratio,
        grad_clip=1.0,
        batch_size=batch,
        grad_accum=opts["grad_accum"],
        options=opts,
        description=(f"llm {cfg.name} (d{cfg.d_model} L{cfg.n_layers} H{cfg.n_heads}/{cfg.n_kv_heads} "
                     f"FFN{cfg.ffn} vocab {vocab} {'tied' if opts['tied'] else 'untied'} ctx {ctx}) on "
                     f"{dataset}, tokenizer {opts['tokenizer']}, {steps} steps x {batch} x {ctx} tokens"),
    )


def _read_text(path: Path) -> list[str]:
    return [path.read_text(encoding="utf-8", errors="replace")]


# Steps-to-target thresholds (val_loss in nats/token) per (model, dataset, tokenizer); None elsewhere.
#   small on pydoc bytes: 3.1, clearly below the 3.26 nats/byte of the corpus's unigram byte model.
#   130M on C4 with T5: ln(30) = 3.40 [I], i.e. ppl 30, short of GaLore's final full-rank AdamW 25.08.
_TARGETS: dict[tuple[str, str, str], float] = {
    ("small", _PYDOC, BYTES): 3.1,
    ("130M", "c4", "t5-base"): math.log(30.0),
}
