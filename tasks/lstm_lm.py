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

Data (``tasks.data.text``): CPython's pydoc prose (default), local files, WikiText, the paper's
multilingual NLI corpus, any HF dataset; character or word vocabularies; the batchify stream.

Parameter roles: LSTM ``weight_ih``/``weight_hh`` (the 4 gates stacked, as torch stores them) are
``matrix``; the embedding is ``embedding``; the decoder weight is ``head`` unless tied to the
embedding, in which case the shared tensor appears once, as ``embedding``; all biases are ``vector``.

Sizes: ``tiny`` (the first 36k / 2k / 2k characters of the train / val / test text, 32 hidden units,
20 steps; tests), ``small`` (full pydoc, char level, hidden 128, batch 16 x bptt 64, 120 steps: about
3.5-4.5 s of CPU time on one thread, val char_acc ~0.53 with AdamW lr 1e-2 against 0.23 for the best
constant guess), ``paper`` (inferred: no Softsign sizes are public, see
docs/protocol.md#lstm-language-model): hidden 1024, tied embeddings, bptt 256 and batch 64 (the nanoGPT
shakespeare-char context/batch), 5,000 steps
(82M characters: about one pass over the ~1e8 characters estimated for the 26 ``*_mnli`` splits,
650k pairs, so nothing is seen twice and dropout is 0), a
4,096-character vocabulary cap (the CJK scripts alone bring thousands of rare symbols), gradient
clipping 1.0.
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
from tasks.data import text
from tasks.data.text import TextStream, Window

DESCRIPTION = (
    "2-layer LSTM language model with truncated BPTT: next-character accuracy (Softsign NCP) or word-level perplexity"
)

OPTIONS = (
    Option("level", str, "char", "char (metric char_acc, max) or word (metric perplexity, min)", choices=text.LEVELS),
    Option(
        "vocab_size",
        int,
        None,
        "keep the K most frequent train symbols (+ <unk>); 0 = keep all",
        auto="size and level (char: all, paper 4096; word: 32768)",
        minimum=0,
    ),
    Option("hidden", int, None, "LSTM hidden size", auto="size (32, 128, 1024)", minimum=1),
    Option("embed", int, None, "embedding size (must equal hidden when tied)", auto="hidden", minimum=1),
    Option("layers", int, 2, "stacked LSTM layers", minimum=1),
    Option("tied", bool, True, "share the embedding and the decoder weight (Press & Wolf 2017)"),
    Option(
        "dropout",
        float,
        None,
        "on embeddings, between LSTM layers and before the decoder",
        auto="size (0)",
        minimum=0,
        below=1,
    ),
    Option("batch_size", int, None, "parallel columns of the token stream", auto="size (8, 16, 64)", minimum=1),
    Option("bptt", int, None, "window length (truncated BPTT)", auto="size (16, 64, 256)", minimum=1),
)

# Per size: model/batch presets, step budget, eval cadence. Measured for small (1 CPU thread): see
# the test file and the task's report.
_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 32, "batch_size": 8, "bptt": 16, "dropout": 0.0, "steps": 20, "eval_every": 10},
    "small": {"hidden": 128, "batch_size": 16, "bptt": 64, "dropout": 0.0, "steps": 120, "eval_every": 40},
    "paper": {"hidden": 1024, "batch_size": 64, "bptt": 256, "dropout": 0.0, "steps": 5000, "eval_every": 500},
}
_VOCAB_PRESET = {
    ("char", "tiny"): 0,
    ("char", "small"): 0,
    ("char", "paper"): 4096,
    ("word", "tiny"): 32768,
    ("word", "small"): 32768,
    ("word", "paper"): 32768,
}
# Steps-to-target thresholds, only where the corpus is the size's default one (elsewhere unknown).
_TARGETS = {("small", "pydoc"): 0.45, ("paper", "nli"): 0.55}
_TINY_CHARS = (36_000, 2_000, 2_000)  # train/val/test characters kept at size tiny

CHAR_ACC, PERPLEXITY = Metric("char_acc", "max"), Metric("perplexity", "min")


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
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
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
        targets = cols[:, start + 1 : stop + 1].long()
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
# The record


def resolve(request: TaskRequest) -> TaskRequest:
    """Size presets filled in; the dataset name parsed; tied embeddings need embed == hidden."""
    text.parse_dataset(request.dataset)
    opts = dict(request.options)
    preset = _PRESETS[request.size]
    for name in ("hidden", "batch_size", "bptt", "dropout"):
        if opts[name] is None:
            opts[name] = preset[name]
    if opts["vocab_size"] is None:
        opts["vocab_size"] = _VOCAB_PRESET[(opts["level"], request.size)]
    if opts["embed"] is None:
        opts["embed"] = opts["hidden"]
    opts["dropout"] = float(opts["dropout"])
    if opts["tied"] and opts["embed"] != opts["hidden"]:
        raise UserError(
            f"tied embeddings need embed == hidden (got embed={opts['embed']}, "
            f"hidden={opts['hidden']}); set tied=false or drop embed"
        )
    return request.with_options(**opts)


def locate(request: TaskRequest, data_dir: Path) -> text.CorpusKey:
    opts = request.options
    return text.locate_corpus(
        request.dataset, data_dir, opts["level"], opts["vocab_size"], _TINY_CHARS if request.size == "tiny" else None
    )


def build(request: TaskRequest, corpus: text.Corpus) -> Task:
    """The task on an encoded corpus (pure; the vocabulary size fixes the model). Raises UserError
    for corpora too small for one window."""
    size, dataset, opts = request.size, request.dataset, dict(request.options)
    preset, level = _PRESETS[size], opts["level"]
    batch_size, bptt = opts["batch_size"], opts["bptt"]
    if corpus.train.numel() // batch_size < 2 * bptt:
        raise UserError(
            f"dataset {dataset!r} has {corpus.train.numel()} training tokens: too few for batch_size="
            f"{batch_size} columns of at least 2*bptt={2 * bptt} tokens; lower batch_size or bptt"
        )
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
        metric, penalty, target = CHAR_ACC, 0.0, _TARGETS.get((size, dataset))
    else:
        # A uniform guess has perplexity = vocabulary size: the worst plausible finite value.
        metric, penalty, target = PERPLEXITY, float(vocab), None
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


TASK = TaskSpec(
    name="lstm_lm",
    description=DESCRIPTION,
    datasets=text.DATASETS,
    default_dataset={"tiny": "pydoc", "small": "pydoc", "paper": "nli"},
    options=OPTIONS,
    metrics=(CHAR_ACC, PERPLEXITY),
    resolve=resolve,
    locate=locate,
    load=text.load_corpus,
    build=build,
    # Char LSTM on pydoc: 20 windows take the loss from ~4.3 nats to ~3-3.7 at these rates.
    tiny=TinyRun(steps=20, lr_position=0.9, window=3, min_drop=0.3),
)
