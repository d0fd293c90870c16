"""The Llama-style decoder of the ``llm`` task (the Softsign paper's 130M / 360M / 720M LLM runs).

Model: pre-norm decoder with RMSNorm, rotary position embeddings (RoPE, rotate-half convention as in
Hugging Face ``LlamaModel``), SwiGLU MLP, causal ``torch.nn.functional.scaled_dot_product_attention``,
no biases, optional grouped-query attention (``n_kv_heads < n_heads``) and optional tied input/output
embeddings. Init: N(0, 0.02) everywhere (GaLore / HF Llama ``initializer_range``), residual output
projections scaled by 1/sqrt(2 * layers) (GPT-2, nanoGPT, epfml llm-baselines), RMSNorm gains 1.

The named configs (``tasks.llm.MODEL_CONFIGS``) and the task live in ``tasks.llm``; this module holds
the config record, the model, its initialisation, and the parameter and flop counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Architecture plus the training recipe that goes with it (docs/protocol.md#llm-pretraining)."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn: int
    vocab: int | None  # None: use the tokenizer's vocabulary size as is
    tied: bool
    ctx: int
    batch_size: int  # sequences per optimizer step (global)
    tokens: int  # default training token budget
    val_tokens: int  # held-out tokens per split (val, test)
    tokenizer: str  # default tokenizer for streamed corpora
    dataset: str  # default dataset when this model is picked at paper size
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.1
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    eval_every: int = 1000
    grad_accum: int = 1  # default micro-batches per step (fits the published batch on one GPU)
    source: str = ""

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


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


def build_model(
    cfg: ModelConfig,
    vocab: int | None = None,
    tied: bool | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> Llama:
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


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module under DDP and/or torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
