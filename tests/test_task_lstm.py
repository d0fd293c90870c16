"""``lstm_lm``: seeded runs, the truncated-BPTT stream and its carried state, metrics,
roles at every size, vocabularies, bad input, and the HF / text-file loaders on offline fixtures written
in their real on-disk formats (parquet dataset repos as on the Hub, a plain UTF-8 file)."""

from __future__ import annotations

import hashlib
import math
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import UserError
from harness.paths import data_dir as resolve_data_dir
from harness.run.loop import run
from harness.spec import RunSpec
from harness.task import check_roles, load_data
from tasks import lstm_lm
from tasks.data import text


def _train_losses(result) -> list[float]:
    return result.curve("train", "loss")


def _load_corpus(dataset, size, level, vocab_size, data_dir=None) -> text.Corpus:
    """The encoded corpus as the task loads it (tiny keeps a slice of every split)."""
    key = text.locate_corpus(
        dataset, resolve_data_dir(data_dir), level, vocab_size, lstm_lm._TINY_CHARS if size == "tiny" else None
    )
    return load_data(text.load_corpus, key)


def _spec(**kw) -> RunSpec:
    # AdamW at a learning rate that moves a tiny run (the default is tuned for long runs).
    base = dict(task="lstm_lm", optimizer="adamw", dataset="pydoc", size="tiny", steps=20, seed=0, hparams={"lr": 0.03})
    base.update(kw)
    return RunSpec(**base)


# --------------------------------------------------------------------------------------------------
# Training through the harness loop


def test_same_seed_same_run_other_seed_other_run():
    a, b, c = run(_spec(steps=8)), run(_spec(steps=8)), run(_spec(steps=8, seed=1))
    assert _train_losses(a) == _train_losses(b)
    # The char-level record: accuracies are fractions, bits per char are logged next to them.
    assert 0.0 <= a.row["val_metric"] <= 1.0 and 0.0 <= a.row["test_metric"] <= 1.0
    assert {"char_acc", "bpc", "loss"} <= {c["name"] for c in a.curves if c["split"] == "val"}
    assert a.row["val_metric"] == b.row["val_metric"]
    assert _train_losses(a) != _train_losses(c)


def test_word_level_reports_perplexity(tmp_path):
    task = lstm_lm.TASK.make("tiny", level="word")
    assert task.metric.name == "perplexity" and task.metric.direction == "min"
    vocab = task.options["vocab_size"]
    assert vocab == 32768  # the cap; the tiny slice has far fewer words
    model = task.make_model(torch.Generator().manual_seed(0))
    assert task.penalty == float(model.embedding.num_embeddings)  # a uniform guess
    result = run(_spec(task_options={"level": "word"}, steps=12, hparams={"lr": 0.01}))
    assert result.row["status"] == "ok" and result.row["metric"] == "perplexity"
    metrics = {c["name"]: c["value"] for c in result.curves if c["split"] == "test"}
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-9)
    assert 1.0 < metrics["perplexity"] < task.penalty
    assert 0.0 <= metrics["word_acc"] <= 1.0


# --------------------------------------------------------------------------------------------------
# Stream layout, carried state, evaluation


def _toy_stream(length=200, batch_size=4, bptt=5) -> text.TextStream:
    ids = torch.arange(length, dtype=torch.int32)
    corpus = text.Corpus(("<unk>",), ids, ids[:20].clone(), ids[:20].clone())
    return text.TextStream(corpus, torch.device("cpu"), batch_size, bptt)


def test_batchify_windows_continue_each_column_and_restart_at_random_offsets():
    stream = _toy_stream()  # 4 columns of 50 consecutive ids: column b holds 50b .. 50b + 49
    windows = [w for _, w in zip(range(60), stream.batches(torch.Generator().manual_seed(3)))]
    offsets = []
    for k, w in enumerate(windows):
        assert w.inputs.shape == w.targets.shape == (4, 5)
        assert torch.equal(w.targets, w.inputs + 1)  # next-token targets
        assert torch.equal(w.inputs // 50, torch.arange(4).unsqueeze(1).expand(4, 5))  # own column
        if w.reset:
            offsets.append(int(w.inputs[0, 0]))
        else:  # continues the previous window of the same column
            assert torch.equal(w.inputs[:, 0], windows[k - 1].targets[:, -1])
    assert windows[0].reset and len(offsets) >= 6
    assert all(0 <= o < 5 for o in offsets) and len(set(offsets)) > 1  # drawn, not fixed
    # Each pass covers the column up to the last full window (static shapes).
    for k, w in enumerate(windows[:-1]):
        if windows[k + 1].reset:
            assert int(w.targets[0, -1]) > 49 - 5


def test_stream_order_comes_only_from_the_generator():
    def take(seed, n=40):
        return [
            (w.inputs.clone(), w.reset)
            for _, w in zip(range(n), _toy_stream().batches(torch.Generator().manual_seed(seed)))
        ]

    a, b, c = take(0), take(0), take(1)
    assert all(torch.equal(x, y) and r == s for (x, r), (y, s) in zip(a, b))
    assert any(not torch.equal(x, y) for (x, _), (y, _) in zip(a, c))


def test_ranks_split_the_columns():
    stream = _toy_stream(batch_size=4)
    w0 = next(stream.batches(torch.Generator().manual_seed(5), rank=0, world_size=2))
    w1 = next(stream.batches(torch.Generator().manual_seed(5), rank=1, world_size=2))
    assert (w0.inputs // 50)[:, 0].tolist() == [0, 2] and (w1.inputs // 50)[:, 0].tolist() == [1, 3]
    with pytest.raises(ValueError, match="divisible"):
        next(stream.batches(torch.Generator(), rank=0, world_size=3))


class _Wrapper(nn.Module):
    """Stands in for DDP: the real model sits in ``.module``."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        return self.module(*args)


def test_hidden_state_is_carried_between_windows_and_reset_on_restart():
    task = lstm_lm.TASK.make("tiny")
    model = task.make_model(torch.Generator().manual_seed(0))
    data = task.make_data(torch.device("cpu"))
    stream = data.batches(torch.Generator().manual_seed(0))
    w0, w1 = next(stream), next(stream)
    assert w0.reset and not w1.reset
    wrapped = _Wrapper(model)  # the state must land on the model behind a wrapper
    with torch.no_grad():
        loss0 = task.loss(wrapped, w0)
        loss1 = task.loss(wrapped, w1)
        assert model.carried_state is not None and not model.carried_state[0].requires_grad
        # Reference: both windows as one sequence from a zero state.
        logits, _ = model(torch.cat([w0.inputs, w1.inputs], 1).long())
        vocab = logits.shape[-1]
        ref0 = F.cross_entropy(logits[:, :16].reshape(-1, vocab), w0.targets.long().flatten())
        ref1 = F.cross_entropy(logits[:, 16:].reshape(-1, vocab), w1.targets.long().flatten())
        assert loss0.item() == pytest.approx(ref0.item(), abs=1e-5)
        assert loss1.item() == pytest.approx(ref1.item(), abs=1e-5)
        # Without the carried state the second window's loss differs: the carry matters.
        fresh, _ = model(w1.inputs.long())
        assert abs(F.cross_entropy(fresh.reshape(-1, vocab), w1.targets.long().flatten()).item() - ref1.item()) > 1e-4
        # A restart window ignores whatever state is carried.
        restart = w1._replace(reset=True)
        assert task.loss(model, restart).item() == pytest.approx(
            F.cross_entropy(fresh.reshape(-1, vocab), w1.targets.long().flatten()).item(), abs=1e-5
        )


def test_evaluate_scores_whole_columns_and_leaves_the_training_state_alone():
    task = lstm_lm.TASK.make("tiny")
    model = task.make_model(torch.Generator().manual_seed(0)).eval()
    data = task.make_data(torch.device("cpu"))
    with torch.no_grad():
        task.loss(model, next(data.batches(torch.Generator())))
        carried = model.carried_state
        metrics = task.evaluate(model, data, "val")
        assert model.carried_state is carried
        cols = data.eval_columns("val")
        logits, _ = model(cols[:, :-1].long())  # one pass per column == windows with carried state
        targets = cols[:, 1:].long()
        ref = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.flatten())
        acc = (logits.argmax(-1) == targets).float().mean()
    assert set(metrics) == {"char_acc", "bpc", "loss"}
    assert metrics["loss"] == pytest.approx(ref.item(), rel=1e-5)
    assert metrics["bpc"] == pytest.approx(metrics["loss"] / math.log(2), rel=1e-12)
    assert metrics["char_acc"] == pytest.approx(acc.item(), abs=1e-6)


# --------------------------------------------------------------------------------------------------
# Roles and sizes


def _lstm_params(inp, hidden, layers=2):
    return sum(4 * hidden * ((inp if i == 0 else hidden) + hidden) + 8 * hidden for i in range(layers))


@pytest.mark.parametrize(
    "size,options",
    [
        ("tiny", {}),
        ("tiny", {"tied": False, "embed": 24, "layers": 3, "dropout": 0.2}),
        ("small", {}),
    ],
)
def test_roles_cover_every_parameter(size, options):
    task = lstm_lm.TASK.make(size, **options)
    model = task.make_model(torch.Generator().manual_seed(0))
    roles = task.roles(model)
    check_roles(model, roles)
    hidden, layers = task.options["hidden"], task.options["layers"]
    assert len(roles["matrix"]) == 2 * layers  # weight_ih_l*, weight_hh_l*: the stacked gates
    assert all(p.shape[0] == 4 * hidden for p in roles["matrix"])
    assert roles["embedding"] == [model.embedding.weight]
    if task.options["tied"]:
        assert model.decoder.weight is model.embedding.weight and "head" not in roles
    else:
        assert roles["head"] == [model.decoder.weight]
    assert len(roles["vector"]) == 2 * layers + 1  # LSTM biases + decoder bias


def test_small_and_paper_presets():
    small = lstm_lm.TASK.make("small")
    assert small.dataset == "pydoc" and small.metric.name == "char_acc" and small.target is not None
    assert (small.options["hidden"], small.options["batch_size"], small.options["bptt"]) == (128, 16, 64)
    paper = lstm_lm.TASK.make("paper", dataset="pydoc")  # the paper model on the offline corpus
    assert (paper.options["hidden"], paper.options["bptt"], paper.options["batch_size"]) == (1024, 256, 64)
    assert paper.options["tied"] and paper.grad_clip == 1.0 and paper.steps == 5000
    with torch.device("meta"):
        model = paper.make_model(torch.Generator())
    check_roles(model, paper.roles(model))
    vocab = model.embedding.num_embeddings
    assert sum(p.numel() for p in model.parameters()) == _lstm_params(1024, 1024) + vocab * 1024 + vocab


# --------------------------------------------------------------------------------------------------
# Vocabularies


def test_char_vocabulary_cap_and_unknowns():
    corpus = text.encode_chars(("aab\n", "abz", "b"), cap=0)
    assert corpus.vocab == ("<unk>", "\n", "a", "b")
    assert corpus.val.tolist() == [2, 3, 0] and corpus.train.dtype == torch.int32
    capped = text.encode_chars(("aab\n", "abz", "b"), cap=1)
    assert capped.vocab == ("<unk>", "a") and capped.train.tolist() == [1, 1, 0, 0]


def test_word_vocabulary_cap_eos_and_unknowns():
    corpus = text.encode_words(("a b a\n\n c a \n", "a d\n", "b\n"), cap=2)
    assert corpus.vocab == ("<unk>", "a", "<eos>")  # blank line: no extra <eos>
    assert corpus.train.tolist() == [1, 0, 1, 2, 0, 1, 2]
    assert corpus.val.tolist() == [1, 0, 2] and corpus.test.tolist() == [0, 2]


# --------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"size": "huge"}, "unknown size 'huge'; known: paper, small, tiny"),
        ({"dataset": "wikitext"}, "unknown dataset 'wikitext'; known: .*hf:<id>"),
        ({"dataset": "nli:xx_mnli"}, "bad NLI split 'xx_mnli'.*de"),
        ({"dataset": "nli:"}, "names no split"),
        ({"dataset": "hf:"}, "hf:<id>"),
        ({"width": 3}, "unknown option.*'width' for task lstm_lm; known: batch_size, bptt, dropout, embed"),
        ({"level": "byte"}, "unknown level 'byte'; known: char, word"),
        ({"hidden": 0}, "hidden=0"),
        ({"bptt": 2.5}, "bptt=2.5"),
        ({"dropout": 1.0}, r"dropout=1.0 for task lstm_lm \(must lie in \[0, 1\)\)"),
        ({"tied": "yes"}, "tied='yes'"),
        ({"embed": 16}, "tied embeddings need embed == hidden"),
        ({"vocab_size": -1}, "vocab_size=-1"),
        ({"batch_size": 4096}, "too few for batch_size=4096"),
    ],
)
def test_bad_input_is_a_user_error(kwargs, match):
    size = kwargs.pop("size", "tiny")
    with pytest.raises(UserError, match=match):
        lstm_lm.TASK.make(size, **kwargs)


def test_text_file_dataset(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(UserError, match=f"missing text file.*{missing}"):
        lstm_lm.TASK.make("tiny", dataset=f"path:{missing}")
    rng = random.Random(0)
    words = ["über", "ça", "东京", "lstm", "window", "state", "carry"]
    text = "\n".join(" ".join(rng.choice(words) for _ in range(9)) for _ in range(800)) + "\n"
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    task = lstm_lm.TASK.make("tiny", dataset=f"path:{path}")
    corpus = _load_corpus(f"path:{path}", "tiny", "char", 0)
    assert set(corpus.vocab[1:]) == set(text[: int(len(text) * 0.95)])
    train_len = min(int(len(text) * 0.95), 36_000)
    assert corpus.train.numel() == train_len
    decoded = "".join(corpus.vocab[i] for i in corpus.val.tolist())
    assert text[int(len(text) * 0.95) :].startswith(decoded)  # val follows train, no overlap
    model = task.make_model(torch.Generator().manual_seed(0))
    check_roles(model, task.roles(model))
    (tmp_path / "short.txt").write_text("hello world\n" * 20, encoding="utf-8")
    with pytest.raises(UserError, match="training tokens: too few"):
        lstm_lm.TASK.make("tiny", dataset=f"path:{tmp_path / 'short.txt'}")


# --------------------------------------------------------------------------------------------------
# HF loaders, offline, on local dataset repos in the Hub's layout


def _parquet(path, columns):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


NLI_WORDS = {
    "de": "der die das Haus Straße groß über Kinder spielen heute".split(),
    "fr": "le la maison rue grand ça être enfants jouent été".split(),
}


def _nli_repo(root, splits=("de_mnli", "fr_mnli"), premises=450):
    """The multilingual-NLI repo layout: data/<split>-00000-of-00001.parquet, premise/hypothesis
    (translated), *_original and label columns; every premise has two hypotheses, as in MNLI."""
    rng = random.Random(1)
    rows = {}
    for split in splits:
        words = NLI_WORDS[split[:2]]
        prem, hyp = [], []
        for i in range(premises):
            p = f"{i} " + " ".join(rng.choice(words) for _ in range(10)) + "."
            for _ in range(2):
                prem.append(p)
                hyp.append(" ".join(rng.choice(words) for _ in range(5)) + ".")
        n = len(prem)
        _parquet(
            root / "data" / f"{split}-00000-of-00001.parquet",
            {
                "premise_original": ["orig"] * n,
                "hypothesis_original": ["orig"] * n,
                "label": [i % 3 for i in range(n)],
                "premise": prem,
                "hypothesis": hyp,
            },
        )
        rows[split] = list(zip(prem, hyp))
    return rows


def _bucket(text):
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") % 100


def test_nli_corpus_paper_size_from_a_local_repo(tmp_path, monkeypatch):
    """Covers make(paper, nli:...) -> datasets.load_dataset(repo, split=[...], cache_dir=<data>/hf) on
    parquet files in the Hub layout (offline) -> row texts -> premise-hash carve -> vocab -> model."""
    repo = tmp_path / "nli_repo"
    rows = _nli_repo(repo)
    monkeypatch.setattr(text, "NLI_REPO", str(repo))
    data = tmp_path / "data"
    task = lstm_lm.TASK.make("paper", dataset="nli:de_mnli,fr_mnli", data_dir=data)
    assert (data / "hf").is_dir()  # the datasets cache went under <data_dir>/hf
    corpus = _load_corpus("nli:de_mnli,fr_mnli", "paper", "char", 4096, data)
    expected = {0: [], 1: [], 2: []}  # test, val, train by the same rule written out independently
    for split in ("de_mnli", "fr_mnli"):
        for p, h in rows[split]:
            b = _bucket(p)
            expected[0 if b == 0 else 1 if b == 1 else 2].append(f"{p}\n{h}\n")
    decode = lambda ids: "".join(corpus.vocab[i] for i in ids.tolist())  # noqa: E731
    assert decode(corpus.train) == "".join(expected[2])
    assert decode(corpus.val) == "".join(expected[1]) and expected[1]
    assert decode(corpus.test) == "".join(expected[0]) and expected[0]
    assert "ü" in corpus.vocab and "ç" in corpus.vocab
    assert task.options["vocab_size"] == 4096 and len(corpus.vocab) < 4096
    with torch.device("meta"):
        model = task.make_model(torch.Generator())
    check_roles(model, task.roles(model))
    vocab = len(corpus.vocab)
    assert sum(p.numel() for p in model.parameters()) == _lstm_params(1024, 1024) + vocab * 1024 + vocab
    # The vocabulary cap keeps the most frequent characters and maps the rest to <unk>.
    capped = _load_corpus("nli:de_mnli,fr_mnli", "tiny", "char", 10, data)
    assert len(capped.vocab) == 11 and " " in capped.vocab and (capped.train == 0).any()


def _wikitext_repo(root, config="wikitext-2-raw-v1"):
    """The Salesforce/wikitext layout: README.md with a `configs:` block, <config>/<split>-*.parquet
    with one `text` column of raw lines (blank rows included)."""
    rng = random.Random(2)
    vocab = "the of and in a to was is for on as by with game series".split()
    (root / config).mkdir(parents=True)
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: "
        + config
        + "\n  data_files:\n"
        + "".join(f"  - split: {s}\n    path: {config}/{s}-*\n" for s in ("train", "validation", "test"))
        + "---\n",
        encoding="utf-8",
    )
    texts = {}
    for split, n in (("train", 400), ("validation", 40), ("test", 40)):
        lines = ["", " = Heading = \n"]
        lines += [" " + " ".join(rng.choice(vocab) for _ in range(8)) + " \n" for _ in range(n)]
        if split == "validation":
            lines.append(" zzzunseen the \n")
        _parquet(root / config / f"{split}-00000-of-00001.parquet", {"text": lines})
        texts[split] = lines
    return texts


def test_wikitext_word_level_from_a_local_repo(tmp_path, monkeypatch):
    """Covers make(wikitext2) -> load_dataset(repo, 'wikitext-2-raw-v1', cache_dir=...) on a README
    configs + parquet repo (offline), the repo's own validation/test splits, word vocab, a loop run."""
    repo = tmp_path / "wikitext"
    texts = _wikitext_repo(repo)
    monkeypatch.setattr(text, "WIKITEXT_REPO", str(repo))
    data = tmp_path / "data"
    corpus = _load_corpus("wikitext2", "tiny", "word", 32768, data)
    val_words = "".join(texts["validation"]).split()
    assert "<eos>" in corpus.vocab and "zzzunseen" not in corpus.vocab
    decoded = [corpus.vocab[i] for i in corpus.val.tolist()]
    assert [w for w in decoded if w != "<eos>"] == [w if w in corpus.vocab else "<unk>" for w in val_words]
    assert decoded.count("<eos>") == len(texts["validation"]) - 1  # blank row: no <eos>
    result = run(
        _spec(dataset="wikitext2", task_options={"level": "word"}, steps=10, hparams={"lr": 0.01}), data_dir=data
    )
    assert result.row["status"] == "ok" and result.row["metric"] == "perplexity"
    assert result.row["dataset"] == "wikitext2"


def test_generic_hf_dataset_with_only_train_is_carved_by_row_hash(tmp_path):
    repo = tmp_path / "plain"
    lines = [f"line {i} of a plain corpus with some words\n" for i in range(2000)]
    _parquet(repo / "data" / "train-00000-of-00001.parquet", {"text": lines})
    corpus = _load_corpus(f"hf:{repo}", "small", "char", 0, tmp_path / "data")
    decode = lambda ids: "".join(corpus.vocab[i] for i in ids.tolist())  # noqa: E731
    assert decode(corpus.test) == "".join(t for t in lines if _bucket(t) == 0)
    assert decode(corpus.val) == "".join(t for t in lines if _bucket(t) == 1)
    assert decode(corpus.train) == "".join(t for t in lines if _bucket(t) >= 2)
    _parquet(tmp_path / "bad" / "data" / "train-00000-of-00001.parquet", {"body": ["x"], "n": [1]})
    with pytest.raises(UserError, match="no 'text' column.*columns: body, n"):
        lstm_lm.TASK.make("tiny", dataset=f"hf:{tmp_path / 'bad'}", data_dir=tmp_path / "data")


@pytest.mark.parametrize(
    "dataset,names",
    [
        ("wikitext2", ["Salesforce/wikitext", "wikitext-2-raw-v1"]),
        ("nli:de_mnli", ["multilingual-NLI-26lang-2mil7", "de_mnli"]),
    ],
)
def test_missing_hf_data_offline_names_dataset_and_how_to_fetch(tmp_path, dataset, names):
    data = tmp_path / "data"
    with pytest.raises(UserError) as info:
        lstm_lm.TASK.make("tiny", dataset=dataset, data_dir=data)
    message = str(info.value)
    assert f"missing dataset '{dataset}'" in message and str(data / "hf") in message
    assert "network access" in message and all(n in message for n in names)


def test_optbench_offline_alone_forces_hf_offline(tmp_path, monkeypatch):
    """With only OPTBENCH_OFFLINE set, datasets/huggingface_hub are switched offline for the load (and
    restored afterwards), so no hub request is attempted."""
    import datasets
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("OPTBENCH_OFFLINE", "1")
    seen = []

    def fake_load(*args, **kwargs):
        seen.append((datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE, kwargs["cache_dir"]))
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    with pytest.raises(UserError, match="missing dataset 'wikitext103'"):
        lstm_lm.TASK.make("tiny", dataset="wikitext103", data_dir=tmp_path)
    assert seen == [(True, True, str(tmp_path / "hf"))]
    assert datasets.config.HF_HUB_OFFLINE is False and hub_constants.HF_HUB_OFFLINE is False


# --------------------------------------------------------------------------------------------------
# The demo size learns (slow: a full small run, a few seconds on one thread)


@pytest.mark.slow
def test_small_learns_far_above_the_unigram_baseline():
    task = lstm_lm.TASK.make("small")
    val = task.make_data(torch.device("cpu")).splits["val"]
    majority = torch.bincount(val.long()).max().item() / val.numel()  # best constant guess
    result = run(_spec(size="small", steps=None, hparams={"lr": 0.01}))
    assert result.row["status"] == "ok"
    assert result.row["val_metric"] > max(0.45, 2 * majority), (result.row["val_metric"], majority)
    assert result.row["steps_to_target"] is not None
