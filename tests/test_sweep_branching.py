"""Sweeps with SoftX branched from X (``branch_from``), per-entry optimizer lists, and tuning
replicates: validation, the runs a branch makes (only S+1..K, from the parent's checkpoint, equal to
the unbranched runs), the fallback when a checkpoint is missing, and the replicate bookkeeping."""

from __future__ import annotations

import warnings

import pytest
from test_sweep import records, run_inprocess, write_sweep

from harness.errors import UserError
from harness.run.loop import run
from harness.sweep import schema as sweep_schema

BRANCHED = [
    "signum",
    {"name": "softsignum", "branch_from": "signum", "search": {"alpha_sign": {"choices": [0.5, 0.75]}}},
]


def row_of(frame, spec_json):
    return frame[frame["spec"] == spec_json].iloc[0]


def _load(tmp_path, **changes):
    return sweep_schema.load(write_sweep(tmp_path / "s.yaml", **changes))


# ------------------------------------------------------------------------------------ validation


def test_a_branch_tunes_only_its_own_hyperparameters(tmp_path):
    sweep = _load(tmp_path, optimizers=BRANCHED + [{"name": "softmuon", "branch_from": "muon"}, "muon"])
    by = {p.optimizer: p for p in sweep.studies}
    soft = by["softsignum"]
    assert soft.branch_from == by["signum"].study
    assert set(soft.shared) == {"lr", "weight_decay", "momentum", "nesterov"}
    assert list(soft.space) == ["alpha_sign"] and soft.trials == 2  # capped at its 2 choices
    # Nothing of its own to search: SoftMuon is not tuned at all, it evaluates Muon's configuration.
    assert by["softmuon"].trials == 0 and by["softmuon"].branch_from == by["muon"].study
    assert sweep.children(by["signum"]) == (soft,)


@pytest.mark.parametrize(
    "optimizers, words",
    [
        ([{"name": "softsignum", "branch_from": "signum"}], "does not run; add signum"),
        (["muon", {"name": "softsignum", "branch_from": "muon"}], "can branch only from 'signum'"),
        (["signum", {"name": "adamw", "branch_from": "signum"}], "cannot branch"),
        (["signum", {"name": "softsignum", "branch_from": "signum", "fixed": {"lr": 0.1}}], "takes lr from its tuned"),
        (
            [
                "signum",
                {"name": "softsignum", "branch_from": "signum", "search": {"alpha_sign": {"uniform": [0.5, 0.9]}}},
            ],
            "as {choices",
        ),
    ],
)
def test_bad_branches_are_refused_with_the_reason(tmp_path, optimizers, words):
    with pytest.raises(UserError, match="line") as err:
        _load(tmp_path, optimizers=optimizers)
    assert words in str(err.value)


def test_an_entry_can_run_a_subset_of_the_optimizers(tmp_path):
    tasks = [
        {"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 12},
        {
            "task": "tabular_mlp",
            "name": "other",
            "size": "tiny",
            "datasets": ["synthetic"],
            "steps": 12,
            "optimizers": ["signum", "hardswitchsign"],
        },
    ]
    sweep = _load(
        tmp_path, tasks=tasks, optimizers=["adamw", "signum", {"name": "hardswitchsign", "branch_from": "signum"}]
    )
    assert [p.optimizer for p in sweep.studies if p.entry == "other"] == ["signum", "hardswitchsign"]
    assert [p.optimizer for p in sweep.studies if p.entry == "tabular_mlp"] == ["adamw", "signum", "hardswitchsign"]
    with pytest.raises(UserError, match="branches from signum: list signum too"):
        _load(
            tmp_path,
            tasks=[dict(tasks[1], optimizers=["hardswitchsign"])],
            optimizers=["signum", {"name": "hardswitchsign", "branch_from": "signum"}],
        )
    with pytest.raises(UserError, match="which the sweep does not run"):
        _load(tmp_path, tasks=[dict(tasks[1], optimizers=["lion"])], optimizers=["signum"])


def test_replicates_are_independent_studies_with_their_own_seeds(tmp_path):
    sweep = _load(tmp_path, replicates=3, optimizers=["adamw"], eval_seeds=2)
    plans = sweep.studies
    assert [p.replicate for p in plans] == [0, 1, 2]
    assert [p.study for p in plans] == [
        "t/tabular_mlp/synthetic/adamw",
        "t/tabular_mlp/synthetic/adamw/r1",
        "t/tabular_mlp/synthetic/adamw/r2",
    ]
    assert [p.seed for p in plans] == [0, 1000, 2000]  # own tune seed (and sampler seed, from the study)
    assert {p.eval_seeds for p in plans} == {(1, 2)}  # the same eval seeds for every replicate
    assert sweep.planned_runs == 3 * (3 + 2)
    with pytest.raises(UserError, match="also an eval seed"):
        _load(tmp_path, replicates=2, eval_seeds=[1000, 7])


# ------------------------------------------------------------------------------------------ runs


def test_branched_sweep_runs_only_the_tail_and_equals_unbranched_runs(tmp_path):
    out = tmp_path / "out"
    tasks = [{"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 40}]
    sweep, url, worker, events = run_inprocess(
        write_sweep(tmp_path / "s.yaml", tasks=tasks, optimizers=BRANCHED, trials=2, eval_seeds=2), out
    )
    df = records(out)
    assert len(df) == sweep.planned_runs == (2 + 2) + (2 + 2)
    soft = df[df["optimizer"] == "softsignum"]
    parent = df[df["optimizer"] == "signum"]
    # Every SoftSignum run started from a Signum checkpoint at S = floor(alpha_sign * 40).
    assert set(df["steps"]) == {40}
    assert (soft["branched_from"].str.len() > 0).all()
    assert sorted(soft["branch_step"]) == sorted(int(a * 40) for a in soft["hp_alpha_sign"])
    ev = soft[soft["phase"] == "eval"]
    parent_eval = parent[parent["phase"] == "eval"].set_index("seed")
    for _, row in ev.iterrows():
        assert row["branched_from"] == parent_eval.loc[row["seed"], "run_id"]  # same seed, same configuration
        for key in ("hp_lr", "hp_weight_decay", "hp_momentum"):
            assert row[key] == parent_eval.loc[row["seed"], key]
    # The same eval run from scratch gives the same record (CPU): branching changes the cost only.
    from harness.run.lineage import unbranched
    from harness.spec import RunSpec

    for spec_json in ev["spec"]:
        branched_spec = RunSpec.from_json(spec_json)
        assert (branched_spec.branched_from, branched_spec.run_id) == (
            row_of(ev, spec_json)["branched_from"],
            row_of(ev, spec_json)["run_id"],
        )
        scratch = run(unbranched(branched_spec))  # the same run from scratch: its own run_id, the same result
        assert scratch.row["run_id"] != branched_spec.run_id
        branched = row_of(ev, spec_json)
        assert scratch.row["test_metric"] == branched["test_metric"]
        assert scratch.row["final_train_loss"] == branched["final_train_loss"]
    assert not (out / "checkpoints").exists()  # kept branch points are deleted when the sweep is complete


def test_a_missing_parent_checkpoint_falls_back_to_a_run_from_scratch(tmp_path):
    # Signum ran before SoftSignum was added to the sweep: its runs kept no branch points. Adding the
    # branch later still works: SoftSignum runs from scratch (same result), with a warning.
    out = tmp_path / "out"
    run_inprocess(write_sweep(tmp_path / "a.yaml", optimizers=["signum"], trials=1, eval_seeds=1, steps=20), out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sweep, *_ = run_inprocess(
            write_sweep(
                tmp_path / "b.yaml",
                trials=1,
                eval_seeds=1,
                steps=20,
                optimizers=["signum", {"name": "softsignum", "branch_from": "signum"}],
            ),
            out,
        )
    assert any("is missing" in str(w.message) and "from scratch" in str(w.message) for w in caught)
    df = records(out)
    soft = df[df["optimizer"] == "softsignum"]
    assert len(soft) == 1 and soft.iloc[0]["status"] == "ok" and soft.iloc[0]["branched_from"] == ""


def test_replicate_runs_are_recorded_with_their_index(tmp_path):
    out = tmp_path / "out"
    sweep, *_ = run_inprocess(
        write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], replicates=2, trials=2, eval_seeds=2, steps=12), out
    )
    df = records(out)
    assert len(df) == sweep.planned_runs == 2 * (2 + 2)
    assert sorted(df["replicate"]) == [0] * 4 + [1] * 4
    tune = df[df["phase"] == "tune"]
    assert sorted(tune["seed"]) == [0, 0, 1000, 1000]
    # Replicate 0 keeps the run_ids a sweep without replicates has; replicate 1's differ even where
    # both evaluate the same configuration on the same seed (trial 0 is the defaults in both).
    ev = df[df["phase"] == "eval"]
    assert ev["run_id"].is_unique and sorted(ev["seed"]) == [1, 1, 2, 2]
    assert set(df["study"]) == {"t/tabular_mlp/synthetic/adamw", "t/tabular_mlp/synthetic/adamw/r1"}


def test_a_child_whose_parent_has_no_complete_trial_fails_its_runs_and_the_worker_goes_on(tmp_path, monkeypatch):
    """Every tune run of Signum raises (given up): SoftSignum's tune runs have no configuration to take
    lr, momentum and weight decay from. They are recorded as failed with that reason (then given up);
    the worker finishes instead of crashing."""
    from harness.run import loop

    real_run = loop.run

    def run_or_raise(spec, *args, **kwargs):
        if spec.optimizer == "signum":
            raise RuntimeError("boom: this optimizer always fails here")
        return real_run(spec, *args, **kwargs)

    monkeypatch.setattr(loop, "run", run_or_raise)
    out = tmp_path / "out"
    tasks = [{"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 12}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_inprocess(write_sweep(tmp_path / "s.yaml", tasks=tasks, optimizers=BRANCHED, trials=1, eval_seeds=1), out)
    df = records(out)
    soft = df[df["optimizer"] == "softsignum"]
    assert len(soft) == 1 and (soft["status"] == "failed").all()
    assert "has no complete tune trial" in soft["status_detail"].iloc[0]
    assert set(df[df["optimizer"] == "signum"]["status"]) == {"failed"}
