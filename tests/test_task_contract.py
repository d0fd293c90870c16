"""The task contract, over every registered task x every registered optimizer: the tiny size trains
with the task's own tiny-run rule (no per-optimizer table: a new optimizer needs no edit here), the
declared metric is produced with its direction, roles cover every parameter exactly once, the record is
complete, one validator checks every task's options, loaded data is cached once per process, and every
shipped sweep file validates against the records."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import optimizers
import tasks
from harness.errors import UserError
from harness.run.loop import run
from harness.run.resolve import resolve
from harness.sweep import schema as sweep_schema
from harness.task import (
    SIZES,
    Dataset,
    Metric,
    Option,
    Task,
    TaskSpec,
    TinyRun,
    check_roles,
    clear_data_cache,
    load_data,
    roles_by_module,
)

ROOT = Path(__file__).resolve().parents[1]
TASKS = sorted(tasks.REGISTRY)
OPTIMIZERS = sorted(optimizers.REGISTRY)

# torch 2.14 raises the torch.jit.script deprecation (emitted by `import torch_geometric`) as a FutureWarning.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")


# --------------------------------------------------------------------------------------------------
# Tiny runs: every task x every optimizer


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("task_name", TASKS)
def test_tiny_trains_with_every_optimizer(task_name, optimizer):
    record, opt = tasks.REGISTRY[task_name], optimizers.REGISTRY[optimizer]
    tiny = record.tiny
    dataset = tiny.dataset or record.default_dataset["tiny"]
    spec, task = resolve(
        task=task_name,
        optimizer=optimizer,
        dataset=dataset,
        size="tiny",
        steps=tiny.steps,
        hparams=tiny.hparams(opt.defaults, opt.search_space),
    )
    result = run(spec, task=task, progress=False)
    row = result.row
    assert row["status"] == "ok", row["status_detail"]
    # The declared metric, with the declared direction, is what the record reports.
    declared = record.metric_for(dataset)
    assert task.metric == declared and task.metric in record.metrics
    assert (row["metric"], row["direction"]) == (declared.name, declared.direction)
    losses = result.curve("train", "loss")
    assert len(losses) == tiny.steps and all(math.isfinite(v) for v in losses)
    first, last = np.mean(losses[: tiny.window]), np.mean(losses[-tiny.window :])
    assert last < first - tiny.min_drop, (task_name, optimizer, first, last)
    # Every evaluation produced the metric; the record holds the last one; the test split is scored.
    val = {
        int(c["step"]): float(c["value"]) for c in result.curves if c["split"] == "val" and c["name"] == declared.name
    }
    expected = sorted({*range(task.eval_every, tiny.steps + 1, task.eval_every), tiny.steps})
    assert sorted(val) == expected
    assert row["val_metric"] == pytest.approx(val[tiny.steps])
    assert math.isfinite(row["test_metric"])
    # Better than a model that learned nothing (the task's penalty: chance level, a uniform guess).
    assert declared.better(row["val_metric"], task.penalty), (row["val_metric"], task.penalty)


def test_tiny_rule_sets_only_learning_rates_inside_their_ranges():
    rule = TinyRun(lr_position=0.75)
    for name, opt in optimizers.REGISTRY.items():
        picked = rule.hparams(opt.defaults, opt.search_space)
        assert "lr" in picked, name  # every registered optimizer has a searched learning rate
        for key, value in picked.items():
            dist = opt.search_space[key]
            assert dist.contains(value) and key in opt.defaults
            # log-scale position: (log v - log low) / (log high - log low) == 0.75
            position = (math.log(value) - math.log(dist.low)) / (math.log(dist.high) - math.log(dist.low))
            assert position == pytest.approx(0.75)
        assert not {"weight_decay", "momentum"} & set(picked)
    # An optimizer unknown to every task (a plugin): its lr-like keys with a range are set, others kept.
    defaults = {"lr": 1e-3, "head_lr": 1e-3, "fixed_lr": 0.5, "beta": 0.9}

    class LogRange:
        def __init__(self, low, high):
            self.low, self.high = low, high

    picked = TinyRun(lr_position=1.0).hparams(
        defaults, {"lr": LogRange(1e-4, 1e-1), "head_lr": LogRange(1e-3, 1e-2), "beta": LogRange(0.5, 0.99)}
    )
    assert picked == {"lr": pytest.approx(1e-1), "head_lr": pytest.approx(1e-2)}


# --------------------------------------------------------------------------------------------------
# Roles and the record


@pytest.mark.parametrize("task_name", TASKS)
def test_roles_cover_every_parameter_once_and_every_optimizer_accepts_them(task_name):
    task = tasks.make(task_name, size="tiny")
    model = task.make_model(torch.Generator().manual_seed(0))
    roles = task.roles(model)
    check_roles(model, roles)
    for name, opt in optimizers.REGISTRY.items():
        built = opt.build(roles, dict(opt.defaults), 10)
        params = {id(p) for group in built.param_groups for p in group["params"]}
        assert params == {id(p) for p in model.parameters() if p.requires_grad}, name


@pytest.mark.parametrize("task_name", TASKS)
def test_record_is_complete_and_describes_what_it_builds(task_name):
    record = tasks.REGISTRY[task_name]
    assert isinstance(record, TaskSpec) and record.name == task_name and tasks.get(task_name) is record
    assert record.sizes == SIZES and record.description
    assert all(d.about for d in record.datasets) and all(o.description for o in record.options)
    assert all(d.fetch == "" if d.offline else d.fetch for d in record.datasets)  # a download says from where
    for size in ("tiny", "small"):  # tiny and small must run offline (tests, demo)
        assert record.find_dataset(record.default_dataset[size]).offline, size
    task = tasks.make(task_name, size="tiny")
    assert isinstance(task, Task) and (task.name, task.size) == (task_name, "tiny")
    assert task.dataset == record.default_dataset["tiny"]
    assert task.metric in record.metrics and task.steps >= record.tiny.steps >= 1
    # The options the run records are the declared ones, with every "chosen by" value filled in.
    names = {o.name for o in record.options}
    assert set(task.options) <= names
    assert all(task.options[o.name] is not None for o in record.options if o.auto and o.name in task.options)


def test_registry_errors_name_the_known_tasks():
    with pytest.raises(UserError, match="unknown task 'cifar'; known: cifar_resnet, gnn_graphland, llm"):
        tasks.get("cifar")
    with pytest.raises(UserError, match="unknown task"):
        tasks.make("nope")


# --------------------------------------------------------------------------------------------------
# One validator for every task


@pytest.mark.parametrize("task_name", TASKS)
def test_one_validator_checks_every_option_of_every_task(task_name):
    record = tasks.REGISTRY[task_name]
    known = ", ".join(sorted(o.name for o in record.options))
    with pytest.raises(
        UserError, match=f"unknown option\\(s\\) 'no_such_option' for task {task_name}; known: {known}$"
    ):
        record.request("tiny", no_such_option=1)
    with pytest.raises(UserError, match="unknown size 'huge'; known: paper, small, tiny"):
        record.request("huge")
    with pytest.raises(UserError, match="unknown dataset 'no-such-set'; known: "):
        record.request("tiny", "no-such-set")
    for opt in record.options:
        bad = ["yes" if opt.types == (bool,) else True]  # a word for a flag, a flag for anything else
        if opt.minimum is not None:
            bad.append(opt.minimum - 1)
        if opt.below is not None:
            bad.append(opt.below)
        if opt.choices:
            bad.append("not-a-choice")
        for value in bad:
            with pytest.raises(UserError, match=f"(invalid option {opt.name}=|unknown {opt.name} )"):
                record.check_options({opt.name: value})
        assert record.check_options({})[opt.name] == opt.default


def test_option_coercion_and_messages():
    count = Option("n", int, None, "a count", auto="size", minimum=1)
    assert count.check("3", "t") == 3 and count.check(3.0, "t") == 3 and count.check("1e6", "t") == 1_000_000
    assert count.check(None, "t") is None
    for bad in (2.5, True, "three", 0, float("inf")):
        with pytest.raises(UserError, match=r"invalid option n=.* for task t \(must be an integer >= 1\)"):
            count.check(bad, "t")
    rate = Option("p", float, 0.0, "a rate", minimum=0, below=1)
    assert rate.check(0, "t") == 0.0 and isinstance(rate.check(0, "t"), float) and rate.check("0.5", "t") == 0.5
    with pytest.raises(UserError, match=r"p=1.0 for task t \(must lie in \[0, 1\)\)"):
        rate.check(1.0, "t")
    with pytest.raises(UserError, match="p=None"):
        rate.check(None, "t")  # not an auto option: None is not a value
    flag = Option("f", bool, True, "a flag")
    assert flag.check("False", "t") is False and flag.check(True, "t") is True
    with pytest.raises(UserError, match="must be true or false"):
        flag.check(1, "t")
    name = Option("m", str, "a", "a name", choices=("a", "b"))
    with pytest.raises(UserError, match="unknown m 'c'; known: a, b"):
        name.check("c", "t")
    with pytest.raises(UserError, match="must be one of a, b"):
        name.check(2, "t")
    either = Option("s", (str, int), None, "a split")
    assert either.check("RL", "t") == "RL" and either.check(3, "t") == 3 and either.check(3.0, "t") == 3
    with pytest.raises(UserError, match="must be text or an integer"):
        either.check(True, "t")
    assert count.shown_default() == "chosen by size" and rate.shown_default() == "0.0"
    assert Option("x", str, None, "x").shown_default() == "none"


def test_a_record_that_contradicts_itself_is_refused():
    def nothing(*args):
        return None

    base = dict(
        name="t",
        description="d",
        datasets=(Dataset("a", "one", offline=True),),
        default_dataset={s: "a" for s in SIZES},
        options=(),
        metrics=(Metric("m", "max"),),
        locate=nothing,
        load=nothing,
        build=nothing,
    )
    TaskSpec(**base)
    with pytest.raises(ValueError, match="default dataset 'b' is not declared"):
        TaskSpec(**{**base, "default_dataset": {"tiny": "b", "small": "a", "paper": "a"}})
    with pytest.raises(ValueError, match="no default dataset for size 'paper'"):
        TaskSpec(**{**base, "default_dataset": {"tiny": "a", "small": "a"}})
    with pytest.raises(ValueError, match="option 'x' declared twice"):
        TaskSpec(**{**base, "options": (Option("x", int, 1, "x"), Option("x", int, 2, "x"))})
    with pytest.raises(ValueError, match="not among the task's metrics"):
        TaskSpec(**{**base, "datasets": (Dataset("a", "one", offline=True, metric=Metric("z", "min")),)})


def test_parametric_dataset_families_match_by_prefix():
    record = tasks.REGISTRY["lstm_lm"]
    assert record.find_dataset("nli").name == "nli"  # the plain name wins over the nli:<...> family
    assert record.find_dataset("nli:de_mnli").name.startswith("nli:<")
    assert record.find_dataset("path:/x.txt").name == "path:<file>"
    assert record.find_dataset("wikitext") is None and record.find_dataset(3) is None
    assert record.metric_for("nli:de_mnli") == Metric("char_acc", "max")
    gnn = tasks.REGISTRY["gnn_graphland"]
    assert gnn.metric_for("city-roads-M") == Metric("r2", "max") and gnn.metric_for("tolokers") == Metric(
        "roc_auc", "max"
    )
    assert tasks.REGISTRY["tabular_mlp"].metric_for("diabetes") == Metric("rmse", "min")


# --------------------------------------------------------------------------------------------------
# Data: loaded once per process, one cache shared by every task


def test_loaded_data_is_cached_once_per_process_and_bounded(monkeypatch):
    from harness import data_cache

    clear_data_cache()
    calls = []

    def load(key):
        calls.append(key)
        return {"key": key}

    assert load_data(load, ("a", 1)) is load_data(load, ("a", 1))
    assert calls == [("a", 1)]
    monkeypatch.setattr(data_cache, "DATA_CACHE_ENTRIES", 2)
    load_data(load, "b")
    load_data(load, "c")  # evicts ("a", 1), the least recently used
    load_data(load, ("a", 1))
    assert calls == [("a", 1), "b", "c", ("a", 1)]
    clear_data_cache()


def test_make_checks_and_locates_every_time_but_loads_once():
    import dataclasses

    clear_data_cache()
    record = tasks.REGISTRY["tabular_mlp"]
    located, loaded = [], []

    def locate(request, root):
        located.append(request.dataset)
        return record.locate(request, root)

    def load(key):
        loaded.append(key)
        return record.load(key)

    counted = dataclasses.replace(record, locate=locate, load=load)
    first, second = counted.make("tiny", "wine"), counted.make("tiny", "wine")
    assert located == ["wine", "wine"] and len(loaded) == 1
    a, b = first.make_data(torch.device("cpu")), second.make_data(torch.device("cpu"))
    assert torch.equal(a.x["train"], b.x["train"])
    counted.make("tiny", "wine", data_seed=1)  # another split is another load
    assert len(loaded) == 2 and loaded[1].data_seed == 1
    clear_data_cache()


def test_a_new_model_on_existing_data_is_one_short_record():
    """What a ViT-on-CIFAR plugin does, with a linear model: reuse the image loaders, the device stream
    and the scoring; the loaded images are the very object cifar_resnet gets (one cache)."""
    from tasks.data import images

    def build(request, data):
        source = images.SOURCES[request.dataset]

        def make_model(generator):
            model = nn.Sequential(nn.Flatten(), nn.Linear(source.channels * source.size**2, source.n_classes))
            for p in model.parameters():
                nn.init.normal_(p, 0.0, 0.01, generator=generator)
            return model

        return Task(
            name="linear_images",
            dataset=request.dataset,
            size=request.size,
            metric=Metric("accuracy", "max"),
            steps=20,
            eval_every=10,
            make_model=make_model,
            make_data=lambda device: images.ImageData(data, device, 32, augment=False),
            loss=images.classification_loss,
            evaluate=images.classification_evaluator(False),
            roles=lambda m: roles_by_module(m, head=m[1]),
            penalty=0.1,
            options=dict(request.options),
        )

    linear = TaskSpec(
        name="linear_images",
        description="a linear classifier on images",
        datasets=images.DATASETS,
        default_dataset={"tiny": "synthetic", "small": "digits", "paper": "cifar10"},
        options=(Option("data_seed", int, 0, "held-out split", minimum=0),),
        metrics=(Metric("accuracy", "max"),),
        locate=lambda request, root: images.locate(request.dataset, root, request.options["data_seed"]),
        load=images.load,
        build=build,
    )
    task = linear.make("tiny")
    data = task.make_data(torch.device("cpu"))
    model = task.make_model(torch.Generator().manual_seed(0))
    check_roles(model, task.roles(model))
    ours = load_data(images.load, linear.locate(linear.request("tiny"), Path("unused")))
    record = tasks.REGISTRY["cifar_resnet"]
    theirs = load_data(record.load, record.locate(record.request("tiny"), Path("unused")))
    assert ours is theirs and torch.equal(data.x["train"], theirs.x["train"])
    with torch.no_grad():
        assert set(task.evaluate(model.eval(), data, "val")) == {"accuracy", "loss"}


# --------------------------------------------------------------------------------------------------
# Shipped sweeps


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_validates_against_the_task_records(path):
    sweep = sweep_schema.load(path)
    assert sweep.studies
    for plan in sweep.studies:
        record = tasks.get(plan.task)
        request = record.request(plan.size, plan.dataset, **dict(plan.options))  # pure: no file touched
        assert request.size == plan.size and record.find_dataset(plan.dataset) is not None
        assert plan.optimizer in optimizers.REGISTRY


def test_a_sweep_option_value_is_checked_by_the_task_record_at_load_time():
    text = (
        "suite: x\ntasks:\n  - task: tabular_mlp\n    size: tiny\n    options:\n      dropout: 1.5\n"
        "optimizers: [adamw]\ntrials: 2\neval_seeds: 2\n"
    )
    with pytest.raises(
        UserError,
        match=r"bad.yaml: line 6: 'tasks\[0\]\.options\.dropout': invalid option "
        r"dropout=1.5 for task tabular_mlp \(must lie in \[0, 1\)\)",
    ):
        sweep_schema.loads(text, source="bad.yaml")
    with pytest.raises(UserError, match="unknown dataset 'path:' for task llm"):  # a family needs a name
        sweep_schema.loads(
            text.replace("tabular_mlp", "llm")
            .replace("      dropout: 1.5\n", "      tied: true\n")
            .replace("    size: tiny\n", "    size: tiny\n    datasets: ['path:']\n"),
            source="bad.yaml",
        )
    sweep = sweep_schema.loads(text.replace("1.5", "0.25"), source="ok.yaml")
    assert {p.options["dropout"] for p in sweep.studies} == {0.25}
