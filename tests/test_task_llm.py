"""The llm task: model, roles, parameter counts, data streams (offline corpus, streamed fixtures in the
hub's on-disk layout), errors, a tiny run's margin over a uniform guess, and DDP vs one process."""

from __future__ import annotations

import gzip
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import UserError
from harness.run.loop import run
from harness.spec import RunSpec
from harness.task import check_roles
from tasks import llm
from tasks.data import text, token_streams, tokenizing, tokens
from tasks.models import llama

REPO = Path(__file__).resolve().parents[1]


def _train_losses(result) -> list[float]:
    return result.curve("train", "loss")


def _curve(curves, split: str, name: str) -> dict[int, float]:
    return {int(c["step"]): float(c["value"]) for c in curves if c["split"] == split and c["name"] == name}


# ---------------------------------------------------------------------------------------------- training


def test_tiny_run_beats_the_uniform_guess_and_reports_perplexity():
    """What the contract suite does not check for every optimizer: the margin over a uniform byte guess
    and the perplexity next to the loss."""
    result = run(
        RunSpec(task="llm", optimizer="adamw", dataset="", size="tiny", steps=20, seed=0, hparams={"lr": 1e-2})
    )
    row = result.row
    assert row["status"] == "ok", row["status_detail"]
    val = _curve(result.curves, "val", "val_loss")
    assert row["val_metric"] < math.log(257) - 0.1  # better than predicting uniformly
    ppl = _curve(result.curves, "val", "ppl")[20]
    assert ppl == pytest.approx(math.exp(val[20]), rel=1e-6)
    assert math.isfinite(row["test_metric"])


def test_evaluate_is_exact_token_mean():
    task = llm.TASK.make("tiny")
    model = task.make_model(torch.Generator().manual_seed(0))
    data = task.make_data(torch.device("cpu"))
    rows = data.heldout["val"]
    with torch.no_grad():
        out = task.evaluate(model.eval(), data, "val")
        direct = torch.nn.functional.cross_entropy(model(rows[:, :-1]).flatten(0, 1), rows[:, 1:].flatten())
    assert out["val_loss"] == pytest.approx(direct.item(), rel=1e-5)
    assert out["loss"] == out["val_loss"] and out["ppl"] == pytest.approx(math.exp(out["val_loss"]))
    assert rows.shape == (4096 // 32, 33)  # val_tokens / ctx rows of ctx + 1
    with pytest.raises(ValueError, match="known: test, val"):
        task.evaluate(model, data, "train")


# ---------------------------------------------------------------------------------------------- model


def test_model_is_causal_and_gqa_matches_repeated_heads():
    cfg = llm.MODEL_CONFIGS["tiny"]
    assert cfg.n_kv_heads < cfg.n_heads  # tiny exercises grouped-query attention
    gqa = llama.build_model(cfg, vocab=257, generator=torch.Generator().manual_seed(0)).eval()
    x = torch.randint(0, 257, (2, cfg.ctx), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = gqa(x)
        y = x.clone()
        y[:, 20:] = (y[:, 20:] + 7) % 257
        changed = gqa(y)
    assert torch.allclose(base[:, :20], changed[:, :20], atol=1e-6)  # no look-ahead
    assert not torch.allclose(base[:, 20:], changed[:, 20:], atol=1e-3)

    # The same model with every kv head written out once per query head gives the same logits.
    import dataclasses

    full_cfg = dataclasses.replace(cfg, n_kv_heads=cfg.n_heads)
    full = llama.build_model(full_cfg, vocab=257, device="cpu").eval()
    state = gqa.state_dict()
    rep, hd = cfg.n_heads // cfg.n_kv_heads, cfg.head_dim
    for key in list(state):
        if key.endswith(("k_proj.weight", "v_proj.weight")):
            w = state[key].view(cfg.n_kv_heads, hd, cfg.d_model)
            state[key] = w.repeat_interleave(rep, dim=0).reshape(cfg.n_heads * hd, cfg.d_model)
    full.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(full(x), base, atol=1e-5)


def test_bf16_autocast_forward_backward():
    task = llm.TASK.make("tiny")
    model = task.make_model(torch.Generator().manual_seed(0))
    data = task.make_data(torch.device("cpu"))
    batch = next(data.batches(torch.Generator().manual_seed(0)))
    ref = task.loss(model, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = task.loss(model, batch)
    loss.backward()
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.item(), rel=2e-2)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_init_is_deterministic_and_tied_option():
    task = llm.TASK.make("tiny", tied=True)
    a = task.make_model(torch.Generator().manual_seed(3))
    b = task.make_model(torch.Generator().manual_seed(3))
    c = task.make_model(torch.Generator().manual_seed(4))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.embed.weight, c.embed.weight)
    assert a.lm_head.weight is a.embed.weight
    untied = llm.TASK.make("tiny").make_model(torch.Generator().manual_seed(3))
    assert untied.lm_head.weight is not untied.embed.weight
    assert llama.count_parameters(untied) - llama.count_parameters(a) == 257 * 32


# ---------------------------------------------------------------------------------------------- roles / sizes


@pytest.mark.parametrize(
    "model_name,tied",
    [("tiny", False), ("tiny", True), ("small", True), ("20M", True), ("130M", False), ("360M", True), ("720M", True)],
)
def test_roles_cover_every_parameter_once(model_name, tied):
    cfg = llm.MODEL_CONFIGS[model_name]
    model = llama.build_model(cfg, vocab=cfg.vocab or 257, tied=tied, device="meta")
    roles = llm.model_roles(model)
    check_roles(model, roles)
    assert roles["embedding"] == [model.embed.weight]
    assert ("head" in roles) == (not tied)
    if not tied:
        assert roles["head"] == [model.lm_head.weight]
    assert len(roles["matrix"]) == 7 * cfg.n_layers  # q, k, v, o, gate, up, down
    assert all(p.ndim == 2 for p in roles["matrix"])
    assert len(roles["vector"]) == 2 * cfg.n_layers + 1  # RMSNorm gains


# The "params" column of docs/protocol.md#llm-pretraining (computed from the published configs).
@pytest.mark.parametrize("model_name,millions", [("130M", 134), ("360M", 362), ("720M", 720)])
def test_paper_parameter_counts_match_protocol(model_name, millions):
    model = llama.build_model(llm.MODEL_CONFIGS[model_name], device="meta")
    assert round(llama.count_parameters(model) / 1e6) == millions


def test_paper_size_resolves_galore_recipe():
    task = llm.TASK.make("paper", dataset="pydoc")  # offline corpus: model and budget of the paper size
    assert task.options["model"] == "130M" and task.steps == 20_000 and task.batch_size == 512
    assert task.warmup_fraction == pytest.approx(0.1) and task.min_lr_ratio == pytest.approx(0.1)
    assert task.schedule == "cosine" and task.grad_clip == 1.0
    assert "vocab 32000" in task.description  # the config's vocab survives a smaller tokenizer
    assert task.penalty == pytest.approx(math.log(32000))


# ---------------------------------------------------------------------------------------------- data


def test_in_memory_stream_is_deterministic_and_shards_the_global_batch():
    data = llm.TASK.make("tiny").make_data(torch.device("cpu"))

    def take(seed, n=3, rank=0, world=1):
        it = data.batches(torch.Generator().manual_seed(seed), rank, world)
        return [next(it) for _ in range(n)]

    a, b, c = take(5), take(5), take(6)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    x, y = a[0]
    assert x.shape == (8, 32) and y.shape == (8, 32) and torch.equal(x[:, 1:], y[:, :-1])
    r0, r1 = take(5, rank=0, world=2), take(5, rank=1, world=2)
    for full, h0, h1 in zip(a, r0, r1):  # two ranks together see exactly the one-process batch
        assert torch.equal(torch.cat([h0[0], h1[0]]), full[0])
    with pytest.raises(UserError, match="divisible"):
        take(5, world=3)


def test_offline_corpus_split_is_disjoint():
    ids = tokens.corpus_tokens(text.pydoc_documents(), tokenizing.ByteTokenizer(), 257)
    assert ids.size > 400_000 and ids.max() == 256  # bytes plus end-of-document ids
    train, held = tokens.split_corpus(ids, 32, 10**9)
    n = ids.size
    assert train.size == int(0.9 * n)
    assert np.array_equal(held["val"][0], ids[train.size : train.size + 33])
    assert held["test"][0, 0] == ids[train.size + (n - train.size) // 2]


def test_local_text_file(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 400)
    result = run(
        RunSpec(task="llm", optimizer="adamw", dataset=f"path:{text}", size="tiny", steps=20, hparams={"lr": 1e-2})
    )
    assert result.row["status"] == "ok"
    assert result.row["val_metric"] < 2.5  # a repeated sentence: far below pydoc prose after 20 steps
    short = tmp_path / "short.txt"
    short.write_text("too short")
    with pytest.raises(UserError, match="too short"):  # found when the corpus is loaded, before any run
        llm.TASK.make("tiny", dataset=f"path:{short}")


# Streamed corpora: fixtures in the hub's own layout, read through HF datasets (streaming=True).


def _docs() -> list[str]:
    paras = [p.strip() for d in text.pydoc_documents() for p in d.split("\n\n")]
    return [p for p in paras if len(p) > 80]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """A BPE tokenizer.json trained here, FineWeb-Edu parquet and C4 json.gz files (hub layout)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    root = tmp_path_factory.mktemp("llm_data")
    docs = _docs()
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<unk>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(docs[:400], trainer)
    tok_path = root / "tokenizer.json"
    tok.save(str(tok_path))

    fw = root / "fineweb-edu" / "sample" / "10BT"
    fw.mkdir(parents=True)
    for i in range(2):  # two files = two shards, like the real sample
        part = docs[i::2]
        pq.write_table(
            pa.table(
                {"text": part, "id": [f"<urn:uuid:{i}-{j}>" for j in range(len(part))], "score": [3.1] * len(part)}
            ),
            fw / f"00{i}_00000.parquet",
        )
    c4 = root / "c4" / "en"
    c4.mkdir(parents=True)
    for name, part in (
        ("c4-train.00000-of-01024.json.gz", docs[:-200]),
        ("c4-validation.00000-of-00008.json.gz", docs[-200:]),
    ):
        with gzip.open(c4 / name, "wt", encoding="utf-8") as f:
            for text in part:
                f.write(
                    json.dumps({"text": text, "timestamp": "2019-04-25T12:57:54Z", "url": "https://example.org/"})
                    + "\n"
                )
    return root, tok_path


@pytest.mark.parametrize("dataset", ["fineweb-edu", "c4"])
def test_streamed_corpus_trains_from_local_copy(corpora, dataset):
    root, tok_path = corpora
    opts = {"tokenizer": str(tok_path), "val_tokens": 1024}
    task = llm.TASK.make("tiny", dataset=dataset, data_dir=str(root), **opts)
    assert "vocab 320" in task.description
    result = run(
        RunSpec(
            task="llm",
            optimizer="adamw",
            dataset=dataset,
            size="tiny",
            steps=20,
            hparams={"lr": 1e-2},
            task_options=opts,
        ),
        data_dir=root,
    )
    assert result.row["status"] == "ok", result.row["status_detail"]
    losses = _train_losses(result)
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3
    assert result.row["val_metric"] < math.log(320)

    data = task.make_data(torch.device("cpu"))
    assert data.heldout["val"].shape == (32, 33) and data.heldout["test"].shape == (32, 33)
    assert not torch.equal(data.heldout["val"], data.heldout["test"])
    if dataset == "c4":  # C4 has its own validation split: nothing carved from train
        assert data.skip == frozenset()
    else:  # FineWeb-Edu: the head of the stream is held out and skipped in training
        docs = _docs()
        head = [tokenizing._hash(docs[0]), tokenizing._hash(docs[2])]  # the first documents of file 000
        assert all(h in data.skip for h in head) and tokenizing._hash(docs[1]) not in data.skip


def test_streamed_batches_deterministic_and_disjoint_across_ranks(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Tagged records in the FineWeb-Edu layout (two files = two shards), byte tokens: every row tells
    # which records it came from.
    folder = tmp_path / "fineweb-edu" / "sample" / "10BT"
    folder.mkdir(parents=True)
    for f in range(2):  # big enough that the rows below come from the first epoch
        texts = [f"[id {i:04d}] " + "lorem ipsum dolor " * 5 for i in range(f * 1500, (f + 1) * 1500)]
        pq.write_table(pa.table({"text": texts}), folder / f"00{f}_00000.parquet")
    corpus = tokens.HUB_CORPORA["fineweb-edu"]
    source = tokens.hub_source(corpus, tokens._local_files(corpus, tmp_path))
    data = token_streams.StreamedTokens(
        source, tokenizing.ByteTokenizer(), 257, ctx=32, batch_size=8, val_tokens=64, device="cpu"
    )

    def rows(seed, rank=0, world=1, n=40):
        it = data.rows(seed, rank, world)
        return np.concatenate([next(it) for _ in range(n)])

    a, b, c = rows(1), rows(1), rows(2)
    assert a.shape == (320, 33) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.max() <= 256

    def ids(block: np.ndarray) -> set[int]:
        found = set()
        for row in block:
            text = bytes(t for t in row.tolist() if t < 256).decode("utf-8", errors="ignore")
            found |= {int(m) for m in re.findall(r"\[id (\d{4})\]", text)}
        return found

    r0, r1 = ids(rows(1, 0, 2)), ids(rows(1, 1, 2))
    # Within an epoch each rank reads its own documents (later epochs re-deal the shards).
    assert len(r0) > 20 and len(r1) > 20 and not (r0 & r1)
    assert 0 not in r0 | r1  # record 0 (head of the stream) is held out

    # The same data object feeds the loop through batches(); with a list of records as the source.
    records = [{"text": f"record {i:03d} " + "lorem ipsum " * 10} for i in range(300)]
    listed = token_streams.StreamSource(lambda: records, lambda: records, carve=True, name="list")
    data2 = token_streams.StreamedTokens(
        listed, tokenizing.ByteTokenizer(), 257, ctx=32, batch_size=8, val_tokens=64, device="cpu"
    )
    x, y = next(data2.batches(torch.Generator().manual_seed(0)))
    assert x.shape == (8, 32) and torch.equal(x[:, 1:], y[:, :-1])
    assert data2.skip == frozenset({tokenizing._hash(records[0]["text"])})  # exactly the document held out
    trained = set()
    it = data2.batches(torch.Generator().manual_seed(0))
    for _ in range(40):
        x, _ = next(it)
        text = bytes(t for t in x.ravel().tolist() if t < 256).decode()
        trained |= {int(m) for m in re.findall(r"record (\d{3})", text)}
    assert 0 not in trained and len(trained) > 30  # record 000 is val/test only


def test_missing_streamed_data_offline_names_dataset(tmp_path):
    for dataset, repo in (("fineweb-edu", "HuggingFaceFW/fineweb-edu"), ("c4", "allenai/c4")):
        with pytest.raises(UserError) as err:
            llm.TASK.make("tiny", dataset=dataset, data_dir=str(tmp_path))
        msg = str(err.value)
        assert repo in msg and str(tmp_path) in msg and "hf download" in msg


def test_tokenizer_errors(corpora, tmp_path):
    root, _ = corpora
    with pytest.raises(UserError, match="nope.json"):
        llm.TASK.make("tiny", dataset="c4", data_dir=str(root), tokenizer=str(tmp_path / "nope.json"))
    with pytest.raises(UserError, match="optbench-test/no-such-tokenizer"):
        llm.TASK.make("tiny", dataset="c4", data_dir=str(root), tokenizer="optbench-test/no-such-tokenizer")


class _FakeTok:
    def __init__(self, text, total, eos, unk=None):
        self.text_vocab_size, self.vocab_size, self.eos_id, self.unk_id = text, total, eos, unk


def test_vocab_rules():
    cfg130, cfg720, tiny = (llm.MODEL_CONFIGS[k] for k in ("130M", "720M", "tiny"))
    assert llm.model_vocab(cfg130, _FakeTok(32000, 32100, 1, 2)) == 32000  # T5 + 100 extra ids
    assert llm.model_vocab(cfg720, _FakeTok(50257, 50257, 50256)) == 50304  # GPT-2, padded
    assert llm.model_vocab(cfg130, _FakeTok(49152, 49152, 0)) == 49152  # too big: round to 64
    assert llm.model_vocab(cfg130, _FakeTok(40001, 40001, 0)) == 40064
    assert llm.model_vocab(tiny, _FakeTok(300, 300, 1)) == 300
    ids = np.array([5, 31999, 32000, 32099], dtype=np.int32)
    assert tokenizing._remap(ids, 32000, 2).tolist() == [5, 31999, 2, 2]


def test_added_tokens_beyond_config_vocab_are_remapped(corpora):
    """A real tokenizer.json with 100 added T5-style sentinels on top of a 320-token BPE: a config with
    vocab 320 keeps 320 rows and a literal sentinel in the text becomes <unk>."""
    import dataclasses

    from tokenizers import Tokenizer

    _, tok_path = corpora
    raw = Tokenizer.from_file(str(tok_path))
    raw.add_special_tokens([f"<extra_id_{i}>" for i in range(100)])
    tok = tokenizing.HFTokenizer(raw, "t5-like")
    assert tok.vocab_size == 420 and tok.text_vocab_size == 320 and tok.eos_id == 1 and tok.unk_id == 0
    cfg = dataclasses.replace(llm.MODEL_CONFIGS["tiny"], vocab=320)
    assert llm.model_vocab(cfg, tok) == 320
    (ids,) = tokenizing.tokenized([{"text": "the object <extra_id_7> is"}], tok, 320)
    assert ids.max() < 320 and 0 in ids.tolist()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"size": "huge"}, "unknown size 'huge'"),
        ({"dataset": "wikitext"}, "c4, fineweb-edu, path:<file>, pydoc"),
        ({"model": "7B"}, "130M, 20M, 360M, 720M, small, tiny"),
        ({"width": 3}, "unknown option(s) 'width' for task llm"),
        ({"tokens": 100}, "less than one step"),
        ({"tokens": -5}, "(must be an integer >= 1)"),
        ({"batch_size": 2.5}, "(must be an integer >= 1)"),
        ({"tied": "yes"}, "true or false"),
        ({"dataset": "path:/no/such/file.txt"}, "/no/such/file.txt"),
    ],
)
def test_bad_options_raise_user_error(kwargs, match):
    kwargs = dict(kwargs)
    size = kwargs.pop("size", "tiny")
    dataset = kwargs.pop("dataset", None)
    with pytest.raises(UserError, match=re.escape(match)):
        llm.TASK.make(size, dataset=dataset, **kwargs)


def test_token_budget_sets_steps():
    task = llm.TASK.make("tiny", tokens=8 * 32 * 7 + 5, batch_size=8)
    assert task.steps == 7 and task.options["tokens"] == 8 * 32 * 7 + 5
    assert llm.TASK.make("small").steps == 150


# ---------------------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_small_learns_beyond_unigram():
    result = run(RunSpec(task="llm", optimizer="adamw", dataset="", size="small", seed=0, hparams={"lr": 1e-2}))
    assert result.row["status"] == "ok"
    assert result.row["val_metric"] < 3.2  # unigram byte entropy of the corpus is 3.26 nats


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path):
    """Same global batch: 2 gloo ranks (torchrun, a real subprocess) vs one process."""
    args = ["run", "--task", "llm", "--optimizer", "adamw", "--size", "tiny", "--steps", "20", "--set", "lr=0.01"]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "harness.cli",
        *args,
        "--out",
        str(tmp_path / "ddp"),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import pandas as pd

    (run_file,) = (tmp_path / "ddp" / "runs").glob("*.parquet")
    assert int(pd.read_parquet(run_file)["world_size"].iloc[0]) == 2
    ddp = pd.read_parquet(tmp_path / "ddp" / "curves" / run_file.name).to_dict("records")
    one = run(RunSpec(task="llm", optimizer="adamw", dataset="", size="tiny", steps=20, hparams={"lr": 0.01}))
    for split, name, rel in (("val", "val_loss", 1e-5), ("test", "val_loss", 1e-5), ("train", "loss", 1e-4)):
        got, want = _curve(ddp, split, name), _curve(one.curves, split, name)
        assert sorted(got) == sorted(want) and want
        for step in want:
            assert got[step] == pytest.approx(want[step], rel=rel), (split, name, step)
