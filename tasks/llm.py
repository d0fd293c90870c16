"""Llama-style decoder language-model pretraining (the Softsign paper's 130M / 360M / 720M LLM runs).

Model: ``tasks.models.llama`` (pre-norm Llama decoder: RMSNorm, RoPE, SwiGLU, causal SDPA, no biases,
optional grouped-query attention and tied embeddings; its init and parameter / flop counts).

Named model configs (``MODEL_CONFIGS``, option ``model``; sources in docs/protocol.md#llm-pretraining):

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
Data (``tasks.data.tokens``): ``pydoc`` (default for tiny/small; CPython's bundled prose) and
``path:<file>`` offline, byte-level tokens by default; ``fineweb-edu`` and ``c4`` streamed with HF
``datasets`` and a ``tokenizers`` tokenizer, from a local copy in the hub layout when there is one.
Val and test each hold ``val_tokens`` tokens (GaLore evaluates on 10M tokens of C4 validation).

Step budget: ``steps = tokens // (batch_size * ctx)`` (option ``tokens``).

DDP: the data streams shard by rank (``tasks.data.token_streams``). ``evaluate`` splits the held-out rows
over ranks and all-reduces (sum, count) itself, so every rank returns the exact global value.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import UserError
from harness.task import Metric, Option, Task, TaskRequest, TaskSpec, TinyRun, roles_by_module
from tasks.data import tokens
from tasks.data.token_streams import InMemoryTokens, StreamedTokens, dist_rank_world
from tasks.data.tokenizing import BYTES, embedding_rows
from tasks.data.tokens import HUB_CORPORA
from tasks.models.llama import ModelConfig, build_model, unwrap

DESCRIPTION = (
    "Llama-style decoder LM pretraining (RMSNorm, RoPE, SwiGLU, SDPA; models tiny, small, 20M, 130M, "
    "360M, 720M); val loss / perplexity"
)
_PYDOC = "pydoc"

# --------------------------------------------------------------------------------------------------
# Model configs
# --------------------------------------------------------------------------------------------------

MODEL_CONFIGS: dict[str, ModelConfig] = {
    c.name: c
    for c in (
        # tiny: a 20-step run in well under a second on one CPU thread; GQA exercised on purpose.
        ModelConfig(
            "tiny",
            32,
            2,
            4,
            2,
            64,
            None,
            False,
            32,
            batch_size=8,
            tokens=40 * 8 * 32,
            val_tokens=4096,
            tokenizer=BYTES,
            dataset=_PYDOC,
            eval_every=10,
            source="CPU tests",
        ),
        # small: the demo size, ~3-6 s per run on one CPU thread on pydoc bytes.
        # (~4 s of CPU time for 150 steps + 4 evals; val loss 5.55 -> ~2.9 nats/byte, below the
        # 3.26 of a unigram byte model).
        ModelConfig(
            "small",
            64,
            2,
            4,
            4,
            128,
            None,
            True,
            64,
            batch_size=16,
            tokens=150 * 16 * 64,
            val_tokens=8192,
            tokenizer=BYTES,
            dataset=_PYDOC,
            eval_every=50,
            source="CPU demo",
        ),
        ModelConfig(
            "20M",
            384,
            4,
            6,
            6,
            1024,
            32000,
            True,
            256,
            batch_size=256,
            tokens=400_000_000,
            val_tokens=1_000_000,
            tokenizer="t5-base",
            dataset="c4",
            warmup_fraction=0.1,
            source="[I] small GaLore-style sibling for quick GPU checks",
        ),
        ModelConfig(
            "130M",
            768,
            12,
            12,
            12,
            2048,
            32000,
            False,
            256,
            batch_size=512,
            tokens=20_000 * 512 * 256,
            val_tokens=10_000_000,
            tokenizer="t5-base",
            dataset="c4",
            warmup_fraction=0.1,
            norm_eps=1e-6,
            grad_accum=4,
            source="GaLore configs/llama_130m.json + scripts/benchmark_c4/llama_130m.sh",
        ),
        # SmolLM2-360M architecture; recipe [I] GaLore llama_350m budget (60k steps x 131k tokens).
        ModelConfig(
            "360M",
            960,
            32,
            15,
            5,
            2560,
            49152,
            True,
            256,
            batch_size=512,
            tokens=60_000 * 512 * 256,
            val_tokens=10_000_000,
            tokenizer="HuggingFaceTB/SmolLM2-360M",
            dataset="fineweb-edu",
            warmup_fraction=0.1,
            rope_theta=100_000.0,
            grad_accum=8,
            source="HuggingFaceTB/SmolLM2-360M config.json; budget of GaLore llama_350m.sh",
        ),
        # epfml 720M: 62 x 32 accumulation x 512 tokens ~ 1M tokens per step, 48k steps, 2k warmup.
        ModelConfig(
            "720M",
            2048,
            12,
            16,
            16,
            5632,
            50304,
            True,
            512,
            batch_size=62 * 32,
            tokens=48_000 * 62 * 32 * 512,
            val_tokens=10_000_000,
            tokenizer="gpt2",
            dataset="fineweb-edu",
            warmup_fraction=2000 / 48_000,
            min_lr_ratio=0.01,
            grad_accum=32,
            source="epfml/llm-optimizer-benchmark scripts/720m",
        ),
    )
}
SIZE_MODEL = {"tiny": "tiny", "small": "small", "paper": "130M"}


# --------------------------------------------------------------------------------------------------
# Roles and vocabulary
# --------------------------------------------------------------------------------------------------


def model_roles(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Block Linear weights -> matrix, token embedding -> embedding, untied lm head -> head
    (tied: the shared weight once, as embedding), RMSNorm gains -> vector."""
    net = unwrap(model)
    return roles_by_module(net, head=net.lm_head)


def model_vocab(cfg: ModelConfig, tok) -> int:
    """The embedding size for ``cfg`` with ``tok`` (see the module docstring)."""
    return embedding_rows(cfg.vocab, tok)


# --------------------------------------------------------------------------------------------------
# Loss and evaluation
# --------------------------------------------------------------------------------------------------


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy (fp32 logits, also under bf16 autocast)."""
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())


def evaluate(model: nn.Module, data: InMemoryTokens | StreamedTokens, split: str) -> dict[str, float]:
    """Token-mean cross-entropy on the split's held-out rows: ``val_loss``, ``loss`` and ``ppl``.

    Under torch.distributed each rank scores rows ``rank::world`` and (sum, count) is all-reduced
    here, so every rank returns the exact global value (the loop may average it again: a no-op).
    """
    if split not in data.heldout:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(sorted(data.heldout))}")
    net = unwrap(model)  # no DDP collectives in eval; uneven per-rank row counts are fine
    rows = data.heldout[split]
    rank, world = dist_rank_world()
    mine = rows[rank::world]
    total = torch.zeros((), dtype=torch.float64, device=rows.device)
    for i in range(0, mine.shape[0], data.batch_size):
        chunk = mine[i : i + data.batch_size]
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
# The record
# --------------------------------------------------------------------------------------------------

OPTIONS = (
    Option(
        "model",
        str,
        None,
        "a model config (see MODEL_CONFIGS)",
        auto="size (tiny, small, 130M)",
        choices=tuple(MODEL_CONFIGS),
    ),
    Option(
        "tokenizer",
        str,
        None,
        "bytes, a tokenizer.json path, or a HF hub id (e.g. t5-base)",
        auto="dataset (bytes offline; the model config's for streamed corpora)",
    ),
    Option(
        "tokens",
        int,
        None,
        "training token budget; steps = tokens // (batch_size * ctx)",
        auto="the model config",
        minimum=1,
    ),
    Option(
        "batch_size",
        int,
        None,
        "sequences per optimizer step, global (split over DDP ranks)",
        auto="the model config",
        minimum=1,
    ),
    Option("tied", bool, None, "tie the input and output embeddings", auto="the model config"),
    Option("val_tokens", int, None, "held-out tokens in each of val and test", auto="the model config", minimum=1),
    Option(
        "grad_accum",
        int,
        None,
        "micro-batches per step (the loop splits each rank's batch; memory, not math)",
        auto="the model config",
        minimum=1,
    ),
)

# Steps-to-target thresholds (val_loss in nats/token) per (model, dataset, tokenizer); None elsewhere.
#   small on pydoc bytes: 3.1, clearly below the 3.26 nats/byte of the corpus's unigram byte model.
#   130M on C4 with T5: ln(30) = 3.40 [I], i.e. ppl 30, short of GaLore's final full-rank AdamW 25.08.
_TARGETS: dict[tuple[str, str, str], float] = {
    ("small", _PYDOC, BYTES): 3.1,
    ("130M", "c4", "t5-base"): math.log(30.0),
}


def resolve(request: TaskRequest) -> TaskRequest:
    """The model config's recipe fills what is not given; at paper size without a dataset the
    model's own corpus is used."""
    size, opts = request.size, request.options
    cfg = MODEL_CONFIGS[opts["model"] or SIZE_MODEL[size]]
    dataset = request.dataset if request.dataset_given or size != "paper" else cfg.dataset

    def pick(key: str) -> Any:
        return getattr(cfg, key) if opts[key] is None else opts[key]

    batch, budget = pick("batch_size"), pick("tokens")
    if budget < batch * cfg.ctx:
        raise UserError(
            f"invalid llm option tokens={budget}: less than one step of batch_size x ctx = "
            f"{batch} x {cfg.ctx} = {batch * cfg.ctx} tokens"
        )
    accum = pick("grad_accum")
    if batch % accum:
        raise UserError(f"invalid llm option grad_accum={accum}: batch_size {batch} is not a multiple of it")
    tokenizer = opts["tokenizer"] or (cfg.tokenizer if dataset in HUB_CORPORA else BYTES)
    resolved = {
        "model": cfg.name,
        "tokenizer": tokenizer,
        "tokens": budget,
        "batch_size": batch,
        "tied": pick("tied"),
        "val_tokens": pick("val_tokens"),
        "grad_accum": accum,
    }
    return TaskRequest(request.task, size, dataset, resolved, request.dataset_given)


def locate(request: TaskRequest, data_dir: Path) -> tokens.TokenKey:
    opts = request.options
    cfg = MODEL_CONFIGS[opts["model"]]
    return tokens.locate(request.dataset, data_dir, opts["tokenizer"], cfg.vocab, cfg.ctx, opts["val_tokens"])


def build(request: TaskRequest, data: tokens.Tokens) -> Task:
    """The task on a loaded corpus and tokenizer (pure)."""
    size, dataset, opts = request.size, request.dataset, dict(request.options)
    cfg, vocab = MODEL_CONFIGS[opts["model"]], data.vocab
    ctx, batch = cfg.ctx, opts["batch_size"]
    steps = max(1, opts["tokens"] // (batch * ctx))

    def make_model(generator: torch.Generator) -> nn.Module:
        return build_model(cfg, vocab=vocab, tied=opts["tied"], generator=generator)

    def make_data(device: torch.device) -> InMemoryTokens | StreamedTokens:
        if data.stream is not None:
            return StreamedTokens(data.stream, data.tok, vocab, ctx, batch, opts["val_tokens"], device)
        return InMemoryTokens(data.train, data.heldout, ctx, batch, device)

    return Task(
        name="llm",
        dataset=dataset,
        size=size,
        metric=VAL_LOSS,
        steps=steps,
        eval_every=min(cfg.eval_every, steps),
        make_model=make_model,
        make_data=make_data,
        loss=lm_loss,
        evaluate=evaluate,
        roles=model_roles,
        penalty=math.log(vocab),  # a model that learned nothing predicts uniformly
        target=_TARGETS.get((cfg.name, dataset, opts["tokenizer"])),
        schedule="cosine",
        warmup_fraction=cfg.warmup_fraction,
        min_lr_ratio=cfg.min_lr_ratio,
        grad_clip=1.0,
        batch_size=batch,
        grad_accum=opts["grad_accum"],
        options=opts,
        description=(
            f"llm {cfg.name} (d{cfg.d_model} L{cfg.n_layers} H{cfg.n_heads}/{cfg.n_kv_heads} "
            f"FFN{cfg.ffn} vocab {vocab} {'tied' if opts['tied'] else 'untied'} ctx {ctx}) on "
            f"{dataset}, tokenizer {opts['tokenizer']}, {steps} steps x {batch} x {ctx} tokens"
        ),
    )


VAL_LOSS = Metric("val_loss", "min")

TASK = TaskSpec(
    name="llm",
    description=DESCRIPTION,
    datasets=tokens.DATASETS,
    default_dataset={"tiny": "pydoc", "small": "pydoc", "paper": "c4"},
    options=OPTIONS,
    metrics=(VAL_LOSS,),
    resolve=resolve,
    locate=locate,
    load=tokens.load,
    build=build,
    tiny=TinyRun(steps=20, lr_position=0.9, window=3, min_drop=0.1),
)
