"""Sweeps: sweep-file validation (key + line), the tune -> evaluate protocol, exact claims with
several workers on one journal file, crash recovery after SIGKILL, divergence, pruning, resume.

Real components throughout: a real Optuna journal file, real parquet records, real worker
subprocesses and the real CLI. The PostgreSQL path is in test_sweep_postgres.py.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.sweep import local as sweep_local
from harness.sweep import schema as sweep_schema
from harness.sweep import slots as sweep_slots
from harness.sweep import space as sweep_space
from harness.sweep import storage as sweep_storage
from harness.sweep import worker as sweep_worker

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OPTBENCH_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def write_sweep(path: Path, **changes) -> Path:
    """A small sweep file: tiny synthetic tabular task, adamw + signum, 3 trials, 2 eval seeds."""
    doc = {
        "suite": "t",
        "tasks": [{"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 12}],
        "optimizers": ["adamw", "signum"],
        "trials": 3,
        "eval_seeds": 2,
        "heartbeat": {"interval": 1, "grace": 3},
    }
    doc.update(changes)
    path.write_text(json.dumps(doc, indent=1))  # JSON is YAML
    return path


def records(out: Path):
    from harness.results.store import read_runs

    return read_runs(out)


def storage_trials(url: str, study: str):
    import optuna

    return optuna.load_study(study_name=study, storage=sweep_storage.open_storage(url)).get_trials(deepcopy=False)


# Run a worker in a subprocess with harness.run.loop.run wrapped: after STALL_AFTER runs it writes the
# STALLED file and blocks inside the next run, so the test kills it mid-trial deterministically.
# With GO set, it waits for that file first, so two workers start working at the same moment; RUN_DELAY
# (seconds) pads every run so one fast worker cannot drain the queue before the other claims a slot.
WRAPPER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path

    import harness.run.loop as loop
    import harness.sweep.worker, optuna, optimizers, tasks  # import everything before the barrier

    stall_after = int(os.environ.get("STALL_AFTER", "-1"))
    run_delay = float(os.environ.get("RUN_DELAY", "0"))
    calls = 0
    real_run = loop.run

    def run(spec, **kwargs):
        global calls
        calls += 1
        if 0 <= stall_after < calls:
            Path(os.environ["STALLED"]).write_text(spec.run_id)
            time.sleep(3600)
        time.sleep(run_delay)  # keeps a worker busy long enough for the other to claim work too
        return real_run(spec, **kwargs)

    loop.run = run
    if os.environ.get("GO"):
        Path(os.environ["READY"]).touch()
        while not Path(os.environ["GO"]).exists():
            time.sleep(0.02)
    from harness.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def start_worker(tmp: Path, sweep_file: Path, url: str, out: Path, worker_id: int, **env_extra) -> subprocess.Popen:
    wrapper = tmp / "worker_wrapper.py"
    wrapper.write_text(WRAPPER)
    env = _env()
    env.update({k: str(v) for k, v in env_extra.items()})
    with open(tmp / f"worker{worker_id}.log", "w") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [
                sys.executable,
                str(wrapper),
                "worker",
                str(sweep_file),
                "--storage",
                url,
                "--out",
                str(out),
                "--progress",
                "json",
                "--worker-id",
                str(worker_id),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=str(ROOT),
        )


def wait_for(predicate, timeout: float, what: str, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"worker exited with {p.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Sweep files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_shipped_sweep_files_validate(path):
    sweep = sweep_schema.load(path)
    assert sweep.studies and sweep.planned_runs > 0
    assert len({p.study for p in sweep.studies}) == len(sweep.studies)
    for plan in sweep.studies:
        assert plan.eval_seeds and plan.seed not in plan.eval_seeds


def test_demo_covers_every_task_and_optimizer_at_small_size():
    import tasks

    sweep = sweep_schema.load(ROOT / "sweeps" / "demo.yaml")
    assert {p.task for p in sweep.studies} == set(tasks.REGISTRY)
    assert {p.optimizer for p in sweep.studies} >= {"adamw", "signum", "softsignum", "muon", "softmuon"}
    assert {p.size for p in sweep.studies} == {"small"}
    assert {len(p.eval_seeds) for p in sweep.studies} == {3}
    # Same eval seeds for every optimizer: the comparison is paired.
    assert len({p.eval_seeds for p in sweep.studies}) == 1


def test_paper_sweep_uses_paper_sizes():
    sweep = sweep_schema.load(ROOT / "sweeps" / "paper.yaml")
    assert {p.size for p in sweep.studies} == {"paper"}
    # AlgoPerf-like: 3 tuning replicates everywhere; the trials are per replicate, each source
    # protocol's budget split in three (tabular: 100 trials -> 3 x 34).
    assert {p.replicate for p in sweep.studies} == {0, 1, 2}
    total: dict[tuple, int] = {}
    for p in sweep.studies:
        key = (p.entry, p.dataset, p.optimizer)
        total[key] = total.get(key, 0) + p.trials
    assert max(total.values()) >= 100
    assert min(total[k] for k in total if k[2] in ("adamw", "signum", "muon") and not k[0].startswith("llm")) >= 50
    # The paper's protocol: SoftX branched from X; HardSwitchSign only where the paper uses it.
    branched = {p.optimizer: p.branch_from.split("/")[3] for p in sweep.studies if p.branch_from}
    assert branched == {"softsignum": "signum", "softmuon": "muon", "hardswitchsign": "signum"}
    assert {p.task for p in sweep.studies if p.optimizer == "hardswitchsign"} == {"lstm_lm", "cifar_resnet"}
    assert {p.space["alpha_sign"].choices for p in sweep.studies if p.task == "cifar_resnet" and p.branch_from} == {
        (0.5, 0.7, 0.8, 0.9, 0.95)
    }


def test_sizes_constant_matches_harness():
    from harness.task import SIZES

    assert sweep_schema.SIZES == SIZES


BAD = [
    # (yaml text, words the message must contain, line)
    (
        "suite: x\ntasks: [tabular_mlp]\noptimizers: [adamw]\ntrials: 2\neval_seeds: 2\ntrails: 3\n",
        ["unknown key 'trails'", "valid:"],
        6,
    ),
    (
        "suite: x\ntasks:\n  - task: tabular_mlp\n    size: tiny\n    dataset: [wine]\noptimizers: [adamw]\ntrials: 2\n"
        "eval_seeds: 2\n",
        ["unknown key 'dataset'", "datasets"],
        5,
    ),
    (
        "suite: x\ntasks: [tabular_mlp]\noptimizers:\n  - adamw\n  - adamx\ntrials: 2\neval_seeds: 2\nsize: tiny\n",
        ["unknown optimizer 'adamx'", "known:", "softmuon"],
        5,
    ),
    (
        "suite: x\ntasks:\n  - task: tabular\n    size: tiny\noptimizers: [adamw]\ntrials: 2\neval_seeds: 2\n",
        ["unknown task 'tabular'", "tabular_mlp"],
        3,
    ),
    (
        "suite: x\ntasks:\n  - task: tabular_mlp\n    size: tiny\n    datasets: [wine, irisx]\noptimizers: [adamw]\n"
        "trials: 2\neval_seeds: 2\n",
        ["unknown dataset 'irisx'", "breast_cancer"],
        5,
    ),
    (
        "suite: x\ntasks:\n  - task: tabular_mlp\n    size: tiny\n    datasets: []\noptimizers: [adamw]\ntrials: 2\n"
        "eval_seeds: 2\n",
        ["tasks[0].datasets", "is empty"],
        5,
    ),
    (
        "suite: x\ntasks: [tabular_mlp]\noptimizers: []\ntrials: 2\neval_seeds: 2\nsize: tiny\n",
        ["'optimizers' is empty"],
        3,
    ),
    (
        "suite: x\ntasks: [tabular_mlp]\noptimizers: [adamw]\ntrials: -4\neval_seeds: 2\nsize: tiny\n",
        ["'trials'", ">= 0", "-4"],
        4,
    ),
    (
        "suite: x\ntasks:\n  - task: tabular_mlp\n    size: tiny\n    steps: -5\noptimizers: [adamw]\ntrials: 2\n"
        "eval_seeds: 2\n",
        ["tasks[0].steps", ">= 1"],
        5,
    ),
    (
        "suite: x\ntasks: [tabular_mlp]\noptimizers: [adamw]\ntrials: 2\neval_seeds: [0, 1]\nsize: tiny\n",
        ["eval_seeds", "tune seed 0"],
        5,
    ),
    (
        "suite: x\ntasks: [tabular_mlp]\noptimizers: [adamw]\ntrials: 2\neval_seeds: 2\nsize: tiny\nsampler: cmaes\n",
        ["unknown sampler 'cmaes'", "qmc"],
        7,
    ),
    (
        "suite: x\ntasks: [tabular_mlp]\noptimizers:\n  - name: adamw\n    search:\n      lr: [0, 1.0e-2]\n"
        "trials: 2\neval_seeds: 2\nsize: tiny\n",
        ["optimizers[0].search.lr", "> 0"],
        6,
    ),
    (
        "suite: x\ntasks: [tabular_mlp]\noptimizers:\n  - name: adamw\n    fixed: {lr: 1e-3}\n"
        "    search: {lr: [1e-4, 1e-2]}\ntrials: 2\neval_seeds: 2\nsize: tiny\n",
        ["'lr' is both fixed and searched"],
        6,
    ),
    (
        "suite: x\ntasks: [tabular_mlp]\noptimizers:\n  - name: muon\n    fixed:\n      lrr: 0.1\ntrials: 2\n"
        "eval_seeds: 2\nsize: tiny\n",
        ["unknown hyperparameter 'lrr'", "aux_lr"],
        6,
    ),
    (
        "suite: x\ntasks:\n  - task: tabular_mlp\n    size: tiny\n    options: {widht: 3}\noptimizers: [adamw]\n"
        "trials: 2\neval_seeds: 2\n",
        ["unknown option 'widht'", "d_block"],
        5,
    ),
    (
        "suite: x\ntasks: [tabular_mlp]\noptimizers: [adamw]\ntrials: 2\ntrials: 3\neval_seeds: 2\n",
        ["duplicate key 'trials'"],
        5,
    ),
    ("suite: x\ntasks: [tabular_mlp\noptimizers: [adamw]\n", ["malformed YAML"], 3),
    (
        "suite: x\ntasks:\n  - task: tabular_mlp\n    size: huge\noptimizers: [adamw]\ntrials: 2\neval_seeds: 2\n",
        ["unknown size 'huge'", "paper"],
        4,
    ),
]


@pytest.mark.parametrize("text,words,line", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_sweep_names_key_and_line(text, words, line):
    with pytest.raises(UserError) as err:
        sweep_schema.loads(text, source="bad.yaml")
    message = str(err.value)
    assert message.startswith(f"bad.yaml: line {line}:"), message
    for word in words:
        assert word in message, message


def test_yaml_floats_overrides_and_defaults():
    sweep = sweep_schema.loads(
        textwrap.dedent("""
        suite: x
        size: tiny
        tasks:
          - task: tabular_mlp
            datasets: [wine, breast_cancer]
            hparams:
              muon: {fixed: {momentum: 0.9}}
        optimizers:
          - name: adamw
            search:
              lr: [1e-4, 3e-3]          # YAML 1.1 would read 1e-4 as a string
          - name: muon
            search:
              momentum: [0.9, 0.99]     # the value's own range; sampled as 1 - x
          - softsignum
        trials: 4
        eval_seeds: [7, 8]
        seed: 3
    """)
    )
    from optimizers._base import LogUniform, OneMinusLogUniform

    plans = {(p.dataset, p.optimizer): p for p in sweep.studies}
    assert len(plans) == 6 and sweep.planned_runs == 6 * (4 + 2)
    assert plans["wine", "adamw"].space["lr"] == LogUniform(1e-4, 3e-3)
    mom = plans["wine", "softsignum"].space["momentum"]
    assert isinstance(mom, OneMinusLogUniform)
    # The entry's fixed momentum wins over the sweep-wide narrowed range.
    assert "momentum" not in plans["wine", "muon"].space and plans["wine", "muon"].fixed == {"momentum": 0.9}
    assert plans["wine", "adamw"].eval_seeds == (7, 8) and plans["wine", "adamw"].seed == 3
    assert plans["wine", "adamw"].study == "x/tabular_mlp/wine/adamw"


def test_eval_seed_count_gives_fresh_shared_seeds():
    sweep = sweep_schema.loads(
        "suite: x\nsize: tiny\ntasks: [tabular_mlp]\noptimizers: [adamw, muon]\ntrials: 1\neval_seeds: 3\nseed: 5\n"
    )
    assert [p.eval_seeds for p in sweep.studies] == [(6, 7, 8), (6, 7, 8)]


@pytest.mark.parametrize("name", ["adamw", "signum", "softsignum", "muon", "softmuon", "sgd"])
def test_trial0_is_exactly_the_defaults_and_samples_stay_in_range(name):
    import optuna

    import optimizers
    from optimizers._base import Categorical

    spec = optimizers.REGISTRY[name]
    params = sweep_space.default_params(spec.search_space, spec.defaults)
    decoded = sweep_space.hparams_from_params(params, spec.search_space, {})
    for key, value in decoded.items():
        assert value == pytest.approx(spec.defaults[key], rel=1e-12), key
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        hp = sweep_space.suggest(study.ask(), spec.search_space)
        for key, dist in spec.search_space.items():
            assert dist.contains(hp[key]), (key, hp[key], dist)
            if not isinstance(dist, Categorical):
                assert isinstance(hp[key], float)


# ---------------------------------------------------------------------------------------------
# CLI: malformed files exit 2, write nothing
# ---------------------------------------------------------------------------------------------


def test_malformed_sweep_files_exit_2_via_cli(tmp_path):
    cases = {
        "yaml": ("suite: x\ntasks: [tabular_mlp\noptimizers: [adamw]\n", ["malformed YAML"], 3),
        "key": (
            "suite: x\ntasks: [tabular_mlp]\noptimizers: [adamw]\ntrials: 2\neval_seeds: 2\nsize: tiny\n"
            "pruner:\n  name: median\n  fraction: [0.5]\n",
            ["unknown key 'fraction'"],
            9,
        ),
        "optimizer": (
            "suite: x\ntasks: [tabular_mlp]\noptimizers: [adamw, lion9]\ntrials: 2\neval_seeds: 2\nsize: tiny\n",
            ["unknown optimizer 'lion9'", "softsignum"],
            3,
        ),
        "trials": (
            "suite: x\ntasks: [tabular_mlp]\noptimizers: [adamw]\ntrials: -1\neval_seeds: 2\nsize: tiny\n",
            ["'trials'", "-1"],
            4,
        ),
    }
    procs = {}
    for name, (text, _, _) in cases.items():
        f = tmp_path / f"{name}.yaml"
        f.write_text(text)
        out = tmp_path / f"out_{name}"
        procs[name] = (
            subprocess.Popen(
                [sys.executable, "-m", "harness.cli", "sweep", str(f), "--out", str(out)],
                env=_env(),
                cwd=str(tmp_path),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            out,
            f,
        )
    for name, (proc, out, f) in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        _, words, line = cases[name]
        assert proc.returncode == 2, (name, stderr)
        assert f"{f}: line {line}:" in stderr, (name, stderr)
        for word in words:
            assert word in stderr, (name, stderr)
        assert "Traceback" not in stderr
        assert not out.exists(), f"{name}: wrote {out}"
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------------------------------------
# The protocol, in-process (real tasks, real loop, real journal file)
# ---------------------------------------------------------------------------------------------


def run_inprocess(sweep_file: Path, out: Path, worker_id: int = 0, storage: str | None = None):
    """Prepare and run one worker in this process until the sweep is complete."""
    sweep = sweep_schema.load(sweep_file)
    url, info = sweep_local.prepare(sweep, out, storage)
    events = []
    worker = sweep_worker.Worker(
        sweep, url, out, worker_id=worker_id, on_event=events.append, info=info, poll_seconds=0.1
    )
    worker.run()
    return sweep, url, worker, events


def test_protocol_records_and_resume(tmp_path):
    sweep_file = write_sweep(tmp_path / "s.yaml")
    out = tmp_path / "out"
    sweep, url, worker, events = run_inprocess(sweep_file, out)
    df = records(out)
    assert len(df) == sweep.planned_runs == 2 * (3 + 2) == worker.runs
    assert df["run_id"].is_unique
    for plan in sweep.studies:
        rows = df[df["study"] == plan.study]
        tune, ev = rows[rows["phase"] == "tune"], rows[rows["phase"] == "eval"]
        assert sorted(tune["trial"]) == [0, 1, 2]
        assert set(tune["seed"]) == {plan.seed} and sorted(ev["seed"]) == [1, 2]
        # Trial 0 ran the optimizer's defaults.
        import optimizers

        defaults = optimizers.REGISTRY[plan.optimizer].defaults
        t0 = json.loads(tune[tune["trial"] == 0]["hparams"].iloc[0])
        assert t0["lr"] == defaults["lr"] and t0["weight_decay"] == defaults["weight_decay"]
        # Eval runs use the best tune configuration (direction from the task's metric).
        trials = storage_trials(url, plan.study)
        best = max((t for t in trials if t.value is not None), key=lambda t: t.value)
        assert set(ev["hp_lr"]) == {float(tune[tune["trial"] == best.number]["hp_lr"].iloc[0])}
        # Every Optuna value is the record's objective.
        for t in trials:
            row = tune[tune["trial"] == t.number].iloc[0]
            assert t.value == pytest.approx(row["objective"]) and t.user_attrs["run_id"] == row["run_id"]
    assert events[-1].kind == "done" and events[-1].done == events[-1].total == sweep.planned_runs

    # Resume: the same command again runs nothing and leaves every record untouched.
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    _, _, again, events = run_inprocess(sweep_file, out)
    assert again.runs == 0 and events[-1].done == sweep.planned_runs
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == stamps

    # Raising the budget resumes: one more trial per study; a study whose best changed is
    # evaluated again (its new configuration on the same seeds), the others are not.
    write_sweep(sweep_file, trials=4)
    _, _, grown, _ = run_inprocess(sweep_file, out)
    df2 = records(out)
    assert (df2["phase"] == "tune").sum() == 8
    changed = 0
    for plan in sweep.studies:
        ev = df2[(df2["study"] == plan.study) & (df2["phase"] == "eval")]
        assert len(ev) in (2, 4) and ev.groupby("hparams").size().eq(2).all()
        changed += len(ev) == 4
    assert grown.runs == 2 + 2 * changed

    # Changing what a study measures is refused, before anything is written.
    write_sweep(
        sweep_file, trials=4, tasks=[{"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 13}]
    )
    with pytest.raises(UserError, match="different steps"):
        run_inprocess(sweep_file, out)


def test_diverging_configuration_is_recorded_and_sweep_goes_on(tmp_path):
    # SGD with a fixed absurd lr overflows to inf/NaN within a few steps.
    sweep_file = write_sweep(
        tmp_path / "s.yaml", optimizers=[{"name": "sgd", "fixed": {"lr": 1e30}}, "adamw"], trials=2, eval_seeds=1
    )
    out = tmp_path / "out"
    sweep, url, worker, _ = run_inprocess(sweep_file, out)
    df = records(out)
    assert len(df) == sweep.planned_runs == 2 * 3
    sgd = df[df["optimizer"] == "sgd"]
    assert (sgd["status"] == "diverged").all() and len(sgd) == 3
    penalty = float(sgd["penalty"].iloc[0])
    assert (sgd["objective"] == penalty).all()
    import optuna

    tune = storage_trials(url, "t/tabular_mlp/synthetic/sgd")
    assert [t.state for t in tune] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(t.value == penalty and t.user_attrs["status"] == "diverged" for t in tune)
    assert (df[df["optimizer"] == "adamw"]["status"] == "ok").all()


def test_duplicate_claims_become_surplus_never_runs(tmp_path):
    """Workers that enqueue the same slots at once (a start-up race), or a fresh ask() made after the
    queue emptied, never add a run: a slot belongs to its lowest-numbered live trial; any other trial
    of it is told FAIL (surplus) without running. Holds for tune and eval slots alike."""
    from optuna.trial import TrialState

    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=2, eval_seeds=2)
    sweep = sweep_schema.load(sweep_file)
    out = tmp_path / "out"
    url, info = sweep_local.prepare(sweep, out, None)
    plan = sweep.studies[0]
    a = sweep_worker.Worker(sweep, url, out, worker_id=0, info=info, poll_seconds=0.05)
    b = sweep_worker.Worker(sweep, url, out, worker_id=1, info=info, poll_seconds=0.05)
    tune = a.study(plan, "tune")
    stray = tune.ask()  # made by ask() on an empty queue: no slot, never the owner of one
    assert not sweep_worker.Worker._is_owner(tune.get_trials(), stray.number, None, range(2))
    tune.tell(stray, state=TrialState.FAIL)
    for worker in (a, b):  # both workers enqueued every tune slot
        for slot, (params, attrs) in worker.tune_slots(plan).items():
            tune.enqueue_trial(params, user_attrs={sweep_slots.SLOT: slot, **attrs})
    while a.eval_slots(plan) is None:  # tune only
        assert a._advance(plan) == "worked"
    ev = a.study(plan, "eval")
    for _ in (a, b):  # ... and both enqueued every eval slot
        for slot, (params, attrs) in a.eval_slots(plan).items():
            ev.enqueue_trial(params, user_attrs={sweep_slots.SLOT: slot, **attrs})
    b.run()
    assert a.runs + b.runs == 4 == sweep.planned_runs
    for study in (tune, ev):
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(complete) == 2 and len({t.user_attrs[sweep_slots.SLOT] for t in complete}) == 2
        surplus = [t for t in trials if t.user_attrs.get(sweep_slots.SURPLUS)]
        assert len(surplus) == 2 and all(t.state == TrialState.FAIL for t in surplus)
        assert all(
            t.number
            > min(c.number for c in complete if c.user_attrs[sweep_slots.SLOT] == t.user_attrs[sweep_slots.SLOT])
            for t in surplus
        )
    df = records(out)
    assert len(df) == 4 and df["run_id"].is_unique
    assert sweep_worker.Worker(sweep, url, out, info=info).run() == 0  # complete: nothing more to claim


def distance_from_default_lr(monkeypatch, default_lr: float) -> list[float]:
    """Replace every evaluated metric by ``-|log10(lr / default_lr)|``: a known, well-separated function
    of the configuration (0 for the defaults, negative for any other lr), so what the pruner decides
    does not hinge on the last bits of a training loss. Training itself still runs for real. Returns
    the list of lrs the runs used, in order."""
    from harness.run import loop

    real_run, real_evaluate, seen = loop.run, loop._evaluate, []

    def run(spec, **kwargs):
        seen.append(spec.hparams["lr"])
        value = -abs(math.log10(spec.hparams["lr"] / default_lr))

        def evaluate(task, model, data, split, autocast):
            out = real_evaluate(task, model, data, split, autocast)
            out[task.metric.name] = value if task.metric.direction == "max" else -value
            return out

        monkeypatch.setattr(loop, "_evaluate", evaluate)
        try:
            return real_run(spec, **kwargs)
        finally:
            monkeypatch.setattr(loop, "_evaluate", real_evaluate)

    monkeypatch.setattr(loop, "run", run)
    return seen


def test_pruner_compares_at_matched_budget_fractions(tmp_path, monkeypatch):
    # The metric is a known function of lr, best at the default lr (trial 0). At half the budget
    # trials 1-2 are behind trial 0, and the median pruner stops them. Intermediate values exist
    # only at the configured fraction (step key 500 = 0.5 of the budget) for every trial.
    import optimizers

    lrs = distance_from_default_lr(monkeypatch, optimizers.REGISTRY["adamw"].defaults["lr"])
    sweep_file = write_sweep(
        tmp_path / "s.yaml",
        tasks=[{"task": "llm", "size": "tiny", "steps": 24}],
        optimizers=[{"name": "adamw", "search": {"lr": [1e-4, 1e-2]}}],
        trials=3,
        eval_seeds=1,
        pruner={"name": "median", "fractions": [0.5], "n_startup_trials": 1},
    )
    out = tmp_path / "out"
    sweep, url, _, _ = run_inprocess(sweep_file, out)
    from optuna.trial import TrialState

    trials = storage_trials(url, sweep.studies[0].study)
    assert len(lrs) == 4 and lrs[0] == optimizers.REGISTRY["adamw"].defaults["lr"]
    assert all(abs(math.log10(lr / lrs[0])) > 1e-6 for lr in lrs[1:3])  # sampled, not the default
    assert all(set(t.intermediate_values) == {500} for t in trials)
    assert trials[0].state == TrialState.COMPLETE and trials[0].value == 0.0
    assert [t.state for t in trials[1:]] == [TrialState.PRUNED] * 2
    df = records(out)
    assert sorted(df[df["status"] == "pruned"]["trial"]) == [1, 2]
    # Stopped at the first eval at or after half of the 24 steps (llm tiny evaluates every 10 steps).
    assert (df[df["status"] == "pruned"]["steps_done"] == 20).all()
    assert (df[df["phase"] == "eval"]["trial"] == 0).all()  # the best COMPLETE trial is evaluated


def test_pruner_keeps_a_trial_better_than_the_median(tmp_path, monkeypatch):
    # The mirror image: the defaults are the worst configuration, so every later trial beats the
    # median at the pruning point and none is pruned.
    from harness.run import loop

    real_run, real_evaluate = loop.run, loop._evaluate

    def run(spec, **kwargs):
        value = math.log10(spec.hparams["lr"])  # larger lr = better; the default 1e-3 is the lowest

        def evaluate(task, model, data, split, autocast):
            better = value if task.metric.direction == "max" else -value
            return {**real_evaluate(task, model, data, split, autocast), task.metric.name: better}

        monkeypatch.setattr(loop, "_evaluate", evaluate)
        try:
            return real_run(spec, **kwargs)
        finally:
            monkeypatch.setattr(loop, "_evaluate", real_evaluate)

    monkeypatch.setattr(loop, "run", run)
    sweep_file = write_sweep(
        tmp_path / "s.yaml",
        tasks=[{"task": "llm", "size": "tiny", "steps": 24}],
        optimizers=[{"name": "adamw", "search": {"lr": [1e-3, 1e-1]}}],
        trials=3,
        eval_seeds=1,
        pruner={"name": "median", "fractions": [0.5], "n_startup_trials": 1},
    )
    sweep, url, _, _ = run_inprocess(sweep_file, tmp_path / "out")
    from optuna.trial import TrialState

    trials = storage_trials(url, sweep.studies[0].study)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    # llm's metric is a loss (min): the patched metric is -log10(lr), 3 for the default lr 1e-3.
    assert trials[0].value == 3.0 and all(t.value < 3.0 for t in trials[1:])


def test_default_outside_a_narrowed_range_makes_trial0_a_sampled_trial(tmp_path, monkeypatch):
    # AdamW's default lr 1e-3 lies outside [1e-9, 2e-9]: trial 0 is not clipped to a bound, it is
    # sampled like trials 1 and 2, so every run stays inside the declared space; the sweep says so.
    lrs = distance_from_default_lr(monkeypatch, 1e-3)
    sweep_file = write_sweep(
        tmp_path / "s.yaml", optimizers=[{"name": "adamw", "search": {"lr": [1e-9, 2e-9]}}], trials=3, eval_seeds=1
    )
    sweep = sweep_schema.load(sweep_file)
    assert len(sweep.notes) == 1
    assert "adamw" in sweep.notes[0] and "lr=0.001 not in [1e-09, 2e-09]" in sweep.notes[0]
    assert "trial 0 is sampled" in sweep.notes[0]
    import optimizers

    spec = optimizers.REGISTRY["adamw"]
    assert sweep_space.default_params(sweep.studies[0].space, spec.defaults) is None
    assert sweep_space.defaults_outside(spec.search_space, spec.defaults) == []  # the registry's own space is fine
    _, url, _, _ = run_inprocess(sweep_file, tmp_path / "out")
    assert len(lrs) == 4 and all(1e-9 <= lr <= 2e-9 for lr in lrs)
    assert len(set(lrs[:3])) == 3  # three distinct draws, no bound repeated
    trials = storage_trials(url, sweep.studies[0].study)
    assert all(1e-9 <= t.params["lr"] <= 2e-9 for t in trials)


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_default_outside_a_narrowed_range_is_a_note_on_the_command_line(tmp_path):
    sweep_file = write_sweep(
        tmp_path / "s.yaml",
        optimizers=[{"name": "signum", "search": {"momentum": [0.5, 0.6]}}],
        trials=1,
        eval_seeds=1,
        steps=2,
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "sweep",
            str(sweep_file),
            "--out",
            str(tmp_path / "o"),
            "--progress",
            "none",
        ],
        env=_env(),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "note:" in proc.stderr and "momentum=0.9 not in [0.5, 0.6]" in proc.stderr


# ---------------------------------------------------------------------------------------------
# Several processes on one journal file
# ---------------------------------------------------------------------------------------------


def test_two_worker_processes_one_journal_exact_runs(tmp_path):
    sweep_file = write_sweep(tmp_path / "s.yaml", trials=4, eval_seeds=2)
    sweep = sweep_schema.load(sweep_file)
    out = tmp_path / "out"
    url = sweep_storage.default_storage_url(out)
    out.mkdir()
    go = tmp_path / "go"
    procs = [
        start_worker(tmp_path, sweep_file, url, out, i, GO=go, READY=tmp_path / f"ready{i}", RUN_DELAY=0.3)
        for i in (0, 1)
    ]
    wait_for(lambda: all((tmp_path / f"ready{i}").exists() for i in (0, 1)), 120, "workers to start", procs)
    go.touch()
    events = []
    for p in procs:
        stdout, _ = p.communicate(timeout=120)
        assert p.returncode == 0, (tmp_path / "worker0.log").read_text() + (tmp_path / "worker1.log").read_text()
        events += [json.loads(line) for line in stdout.splitlines()]
    df = records(out)
    assert len(df) == sweep.planned_runs == 2 * (4 + 2)
    assert df["run_id"].is_unique
    assert not df.duplicated(["study", "phase", "trial", "seed"]).any()
    runs = [e for e in events if e["kind"] == "run"]
    assert len(runs) == sweep.planned_runs
    assert {e["worker"] for e in runs} == {0, 1}, "both workers should have claimed work"
    assert [e["done"] for e in events if e["kind"] == "done"] == [sweep.planned_runs] * 2
    from optuna.trial import TrialState

    for plan in sweep.studies:
        trials = storage_trials(url, plan.study)
        owned = [t for t in trials if t.state == TrialState.COMPLETE]
        assert sorted(t.user_attrs[sweep_slots.SLOT] for t in owned) == [0, 1, 2, 3]


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_sigkill_mid_trial_then_restart_completes(tmp_path):
    sweep_file = write_sweep(tmp_path / "s.yaml")
    sweep = sweep_schema.load(sweep_file)
    out = tmp_path / "out"
    url = sweep_storage.default_storage_url(out)
    out.mkdir()
    stalled = tmp_path / "stalled"
    proc = start_worker(tmp_path, sweep_file, url, out, 0, STALL_AFTER=2, STALLED=stalled)
    wait_for(stalled.exists, 120, "the worker to stall inside its third run", [proc])
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # reap it and close its pipe
    killed_run = stalled.read_text()
    from optuna.trial import TrialState

    first = sweep.studies[0].study
    orphan = [t for t in storage_trials(url, first) if t.state == TrialState.RUNNING]
    assert len(orphan) == 1, "the killed worker should leave its trial RUNNING"
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    assert len(kept) == 2 and f"{killed_run}.parquet" not in kept

    # Restart (same machine: the dead pid is noticed at once) and finish the sweep.
    _, _, worker, _ = run_inprocess(sweep_file, out, worker_id=1)
    df = records(out)
    assert len(df) == sweep.planned_runs and df["run_id"].is_unique
    assert worker.runs == sweep.planned_runs - 2
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir() if p.name in kept} == kept
    trials = storage_trials(url, first)
    dead = next(t for t in trials if t.number == orphan[0].number)
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert dead.state == TrialState.FAIL
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == dead.params
    assert killed_run in set(df["run_id"])  # the interrupted configuration was re-run, same run_id


def test_suite_command_with_two_workers_writes_leaderboard(tmp_path, capsys):
    # `optbench suite --workers 2`: worker 0 runs in this process, worker 1 is a real subprocess
    # (the real CLI subprocess path is covered by test_malformed_sweep_files_exit_2_via_cli).
    from harness.cli import main

    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw", "muon"], trials=2, eval_seeds=2)
    out = tmp_path / "out"
    assert main(["suite", str(sweep_file), "--workers", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "8/8 runs recorded (4 tune, 4 eval; 0 diverged, 0 failed)" in err
    assert (out / "optuna.journal").is_file() and (out / "sweep.yaml").is_file()
    assert (out / "leaderboard.md").is_file() and (out / "leaderboard.csv").is_file()
    assert "muon" in (out / "leaderboard.md").read_text()
    # Not a tty: one plain progress line per run, readable in CI logs, and one 'finished' per worker.
    lines = [ln for ln in err.splitlines() if ln.startswith("[w")]
    assert sum(" tune " in ln or " eval " in ln for ln in lines) == 8
    assert sum("finished (8/8 runs" in ln for ln in lines) == 2


def test_slot_given_up_only_after_repeated_worker_deaths():
    """A run that fails on its own every time must not hang the sweep: after MAX_RETRY re-runs its
    slot is given up. Ctrl-C releases and surplus duplicates are not deaths; nor (issue 11) is a
    worker that vanished without an exception (killed from outside): only far more of those than
    MAX_RETRY give a slot up (MAX_SILENT_DEATHS, a safety cap)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study()
    for slot, extra in ((0, {"raised": True}), (1, {"released": True}), (2, {"surplus": True}), (3, {})):
        for _ in range(sweep_slots.MAX_RETRY + 1):
            number = len(study.get_trials())
            study.add_trial(
                create_trial(
                    state=TrialState.FAIL,
                    user_attrs={
                        sweep_slots.SLOT: slot,
                        **({sweep_slots.SURPLUS: True} if "surplus" in extra else {}),
                        **(
                            {sweep_slots.ERROR: {"number": number, "detail": "RuntimeError: boom"}}
                            if "raised" in extra
                            else {}
                        ),
                    },
                    system_attrs={sweep_slots.RELEASED: number} if "released" in extra else {},
                )
            )
    trials = study.get_trials()
    assert sweep_worker.Worker._finished(trials, [0, 1, 2]) == {0: None}
    assert sweep_worker.Worker._finished(trials[: sweep_slots.MAX_RETRY], [0]) == {}
    # Slot 3: MAX_RETRY + 1 silent deaths (killed from outside) are not enough to give it up ...
    assert sweep_worker.Worker._finished(trials, [3]) == {}
    for _ in range(sweep_slots.MAX_SILENT_DEATHS - (sweep_slots.MAX_RETRY + 1)):  # MAX_SILENT_DEATHS deaths in all
        study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={sweep_slots.SLOT: 3}))
    assert sweep_worker.Worker._finished(study.get_trials(), [3]) == {}
    # ... only more than MAX_SILENT_DEATHS (a run that gets its process OOM-killed every time) are.
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={sweep_slots.SLOT: 3}))
    assert sweep_worker.Worker._finished(study.get_trials(), [3]) == {3: None}
    # An error mark copied onto a re-queued trial (Optuna's retry callback copies attributes) does
    # not make that trial's own death an error: the mark must carry the trial's own number.
    copied = create_trial(
        state=TrialState.FAIL, user_attrs={sweep_slots.SLOT: 4, sweep_slots.ERROR: {"number": 0, "detail": "x"}}
    )
    for _ in range(sweep_slots.MAX_RETRY + 1):
        study.add_trial(copied)
    assert sweep_worker.Worker._finished(study.get_trials(), [4]) == {}


def test_importing_sweep_modules_imports_neither_optuna_nor_torch():
    code = (
        "import sys, harness.sweep.worker, harness.sweep.cli; "
        "print(sorted(m for m in ('optuna', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_ctrl_c_releases_the_trial_and_rerun_resumes(tmp_path):
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=3, eval_seeds=1)
    sweep = sweep_schema.load(sweep_file)
    out = tmp_path / "out"
    url = sweep_storage.default_storage_url(out)
    out.mkdir()
    stalled = tmp_path / "stalled"
    proc = start_worker(tmp_path, sweep_file, url, out, 0, STALL_AFTER=1, STALLED=stalled)
    wait_for(stalled.exists, 120, "the worker to stall inside its second run", [proc])
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "re-run the same command to resume" in (tmp_path / "worker0.log").read_text()
    from optuna.trial import TrialState

    trials = storage_trials(url, sweep.studies[0].study)
    released = [t for t in trials if t.state == TrialState.FAIL]
    assert not [t for t in trials if t.state == TrialState.RUNNING]  # given back at once, no grace wait
    assert len(released) == 1 and released[0].system_attrs[sweep_slots.RELEASED] == released[0].number
    assert [
        t.params
        for t in trials
        if t.state == TrialState.WAITING and t.system_attrs.get("failed_trial") == released[0].number
    ] == [released[0].params]
    _, _, worker, _ = run_inprocess(sweep_file, out)
    assert worker.runs == sweep.planned_runs - 1 and len(records(out)) == sweep.planned_runs


def test_transfer_from_evaluates_the_donor_best_without_tuning(tmp_path):
    # As the paper-scale LLM entries (docs/protocol.md#llm-pretraining): tune at one size, evaluate the
    # tuned configurations at another.
    base = {"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 12}
    sweep_file = write_sweep(
        tmp_path / "s.yaml",
        optimizers=["adamw"],
        trials=3,
        eval_seeds=1,
        tasks=[
            {**base, "name": "narrow"},
            {**base, "name": "wide", "options": {"d_block": 48}, "transfer_from": "narrow"},
        ],
    )
    out = tmp_path / "out"
    sweep, url, worker, _ = run_inprocess(sweep_file, out)
    assert [p.trials for p in sweep.studies] == [3, 0] and sweep.planned_runs == 5 == worker.runs
    df = records(out)
    donor = df[(df["study"] == "t/narrow/synthetic/adamw") & (df["phase"] == "eval")]
    wide = df[df["study"] == "t/wide/synthetic/adamw"]
    assert list(wide["phase"]) == ["eval"] and list(wide["hparams"]) == list(donor["hparams"])
    assert json.loads(wide["task_options"].iloc[0])["d_block"] == 48
    with pytest.raises(UserError, match="line 1: 'tasks\\[0\\].transfer_from' names 'later'"):
        sweep_schema.loads(
            json.dumps(
                {
                    "suite": "x",
                    "size": "tiny",
                    "optimizers": ["adamw"],
                    "trials": 1,
                    "eval_seeds": 1,
                    "tasks": [{"task": "tabular_mlp", "transfer_from": "later"}],
                }
            )
        )
