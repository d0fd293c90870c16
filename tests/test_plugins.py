"""Plugins: an optimizer or task from outside optbench, by import path (a module on PYTHONPATH), by
torch.optim name, or by the entry points of an installed package (examples/plugins, installed for
real with pip into a folder of the test), through `optbench run`, a sweep and `optbench list`; bad
references exit 2 naming the module; every record names where its optimizer and task came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from harness import plugins
from harness.cli import main
from harness.errors import UserError
from harness.results import store as records

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugins"

# A user's optimizer, written outside the repository: a plain torch.optim.Optimizer subclass.
USER_OPTIMIZER = textwrap.dedent('''
    import torch

    class HeavyBall(torch.optim.Optimizer):
        """SGD with heavy-ball momentum, written by a user."""

        def __init__(self, params, lr=0.05, momentum=0.9, weight_decay=0.0, foreach=None):
            super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    buf = self.state[p].setdefault("buf", torch.zeros_like(p))
                    buf.mul_(group["momentum"]).add_(p.grad)
                    p.mul_(1 - group["lr"] * group["weight_decay"]).add_(buf, alpha=-group["lr"])

    class Routed(HeavyBall):
        """Muon-like: only the hidden matrices; the rest goes to an auxiliary AdamW."""

        optbench_routing = "matrix"

    not_an_optimizer = 42
''')


def _env(*paths: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OPTBENCH_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), str(ROOT)])
    return env


def _cli(env, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    folder = tmp_path / "userpkgs"
    folder.mkdir()
    (folder / "my_opt.py").write_text(USER_OPTIMIZER)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop("my_opt", None)
    plugins._resolve_plugin.cache_clear()


# ------------------------------------------------------------------------------ import paths, CLI


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_a_user_optimizer_and_the_example_task_by_import_path(user_module, tmp_path):
    env = _env(user_module, EXAMPLE)
    out = tmp_path / "runs"
    proc = _cli(
        env,
        "run",
        "--task",
        "optbench_example.mixer:TASK",
        "--optimizer",
        "my_opt:HeavyBall",
        "--steps",
        "20",
        "--out",
        str(out),
        "--set",
        "lr=0.02",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = records.read_runs(out).iloc[0]
    assert row["optimizer"] == "my_opt:HeavyBall" and row["task"] == "optbench_example.mixer:TASK"
    assert (
        row["optimizer_origin"] == "import path my_opt" and row["task_origin"] == "import path optbench_example.mixer"
    )
    assert row["task_version"] == "0.1.0"  # the module's __version__ when it is not an installed distribution
    assert json.loads(row["hparams"]) == {"lr": 0.02, "momentum": 0.9, "weight_decay": 0.0}  # foreach is not an hparam
    assert row["status"] == "ok" and row["implementation"] == "plugin"

    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        json.dumps(
            {
                "suite": "plug",
                "trials": 2,
                "eval_seeds": 1,
                "size": "tiny",
                "tasks": [{"task": "optbench_example.mixer:TASK", "steps": 12}],
                "optimizers": ["adamw", {"name": "my_opt:HeavyBall", "search": {"lr": [1e-5, 1e-2]}}],
            }
        )
    )
    proc = _cli(env, "suite", str(sweep), "--out", str(tmp_path / "sweep"), "--progress", "none")
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = records.read_runs(tmp_path / "sweep")
    mine = df[df["optimizer"] == "my_opt:HeavyBall"]
    assert len(mine) == 3 and (mine["optimizer_origin"] == "import path my_opt").all()
    assert all(1e-5 <= lr <= 1e-2 for lr in mine["hp_lr"])  # the sweep's search range, not the default one
    assert "my_opt:HeavyBall" in (tmp_path / "sweep" / "leaderboard.md").read_text()


def test_wrapping_reads_the_signature_and_routes_matrices(user_module):
    spec = plugins.optimizer("my_opt:HeavyBall")
    assert spec.defaults == {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0}
    assert set(spec.search_space) == {"lr"} and spec.search_space["lr"].low == plugins.DEFAULT_LR_RANGE[0]
    w, b = torch.nn.Parameter(torch.ones(3, 4)), torch.nn.Parameter(torch.ones(3))
    opt = spec.build({"matrix": [w], "vector": [b]}, {"weight_decay": 0.1}, 10)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]  # no decay on 1-D parameters

    routed = plugins.optimizer("my_opt:Routed")
    assert {"aux_lr", "aux_betas", "aux_eps", "aux_weight_decay"} <= set(routed.defaults)
    emb = torch.nn.Parameter(torch.ones(5, 4))
    opt = routed.build({"matrix": [w], "embedding": [emb], "vector": [b]}, {}, 10)
    assert isinstance(opt.main, sys.modules["my_opt"].Routed) and isinstance(opt.aux, torch.optim.AdamW)
    assert [p for g in opt.main.param_groups for p in g["params"]] == [w]
    assert {id(p) for g in opt.aux.param_groups for p in g["params"]} == {id(emb), id(b)}
    for p in (w, emb, b):
        p.grad = torch.ones_like(p)
    opt.step()
    assert isinstance(opt, torch.optim.Optimizer)  # one optimizer: hooks, schedulers, add_param_group
    assert [g["route"] for g in opt.param_groups] == ["main", "aux", "aux"]
    state = opt.state_dict()
    assert set(state) == {"state", "param_groups"} and len(opt.state) == 3  # torch's one format
    again = routed.build({"matrix": [w], "embedding": [emb], "vector": [b]}, {}, 10)
    again.load_state_dict(state)
    assert torch.equal(again.main.state[w]["buf"], opt.main.state[w]["buf"])
    assert again.state is again.main.state is again.aux.state  # one state, shared with both parts


def test_a_two_part_routed_state_dict_from_before_still_loads(user_module):
    """optbench wrote a routed optimizer's state as {"main": ..., "aux": ...}; such checkpoints load."""
    routed = plugins.optimizer("my_opt:Routed")
    w, emb, b = (torch.nn.Parameter(torch.ones(*s)) for s in ((3, 4), (5, 4), (3,)))
    roles = {"matrix": [w], "embedding": [emb], "vector": [b]}
    opt = routed.build(roles, {}, 10)
    for p in (w, emb, b):
        p.grad = torch.full_like(p, 0.5)
    opt.step()
    whole = opt.state_dict()  # split into the old two-part form: main's groups, then aux's re-indexed from 0
    n_main = sum(len(g["params"]) for g in whole["param_groups"] if g["route"] == "main")

    def part(route, shift):
        groups = [
            {**{k: v for k, v in g.items() if k != "route"}, "params": [i - shift for i in g["params"]]}
            for g in whole["param_groups"]
            if g["route"] == route
        ]
        ids = {i + shift for g in groups for i in g["params"]}
        return {"state": {i - shift: s for i, s in whole["state"].items() if i in ids}, "param_groups": groups}

    old = {"main": part("main", 0), "aux": part("aux", n_main)}
    again = routed.build({k: [torch.nn.Parameter(p.detach().clone()) for p in v] for k, v in roles.items()}, {}, 10)
    again.load_state_dict(old)
    assert torch.equal(again.state[again.main.param_groups[0]["params"][0]]["buf"], opt.state[w]["buf"])
    emb_again = again.aux.param_groups[0]["params"][0]
    assert torch.equal(again.state[emb_again]["exp_avg"], opt.state[emb]["exp_avg"])


def test_torch_optim_classes_by_short_name(tmp_path):
    spec = plugins.optimizer("torch:RAdam")
    assert spec.defaults["lr"] == 1e-3 and "foreach" not in spec.defaults
    assert plugins.origin("optimizer", "torch:RAdam").kind == "torch.optim"
    with pytest.raises(UserError, match="torch.optim has no optimizer 'Nope'; known: .*Adam"):
        plugins.optimizer("torch:Nope")


@pytest.mark.parametrize(
    "name, words",
    [
        ("no_such_module:Thing", "cannot import module 'no_such_module'"),
        ("my_opt:Missing", "module 'my_opt' has no attribute 'Missing'"),
        ("my_opt:not_an_optimizer", "is a int, not an optimizers.OptimizerSpec or a torch.optim.Optimizer subclass"),
        ("lion", "unknown optimizer 'lion'"),
    ],
)
def test_bad_plugin_references_exit_2_and_name_the_module(user_module, tmp_path, capsys, name, words):
    code = main(["run", "--task", "tabular_mlp", "--optimizer", name, "--out", str(tmp_path / "o")])
    assert code == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written


def test_a_task_reference_of_the_wrong_kind_is_refused(user_module, tmp_path, capsys):
    assert main(["run", "--task", "my_opt:HeavyBall", "--optimizer", "adamw", "--out", str(tmp_path)]) == 2
    assert "not a harness.task.TaskSpec" in capsys.readouterr().err


def test_a_name_clash_between_a_built_in_and_an_entry_point_is_refused(tmp_path, monkeypatch):
    # A package that registers an optimizer named "adamw": either could be meant, so neither is taken.
    dist = tmp_path / "site" / "clashing_pkg-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: clashing-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[optbench.optimizers]\nadamw = clashing_pkg:AdamW\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    plugins._entry_point_names.cache_clear()
    plugins._resolve_plugin.cache_clear()
    try:
        with pytest.raises(
            UserError, match="'adamw' is provided by 2 sources: built-in; entry point clashing_pkg:AdamW"
        ):
            plugins.optimizer("adamw")
        assert "adamw (clashes with a built-in)" in plugins.available("optimizer")
    finally:
        monkeypatch.undo()
        plugins._entry_point_names.cache_clear()
        plugins._resolve_plugin.cache_clear()
    assert plugins.optimizer("adamw").name == "adamw"


# --------------------------------------------------------------------------- an installed package


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """examples/plugins installed for real (pip, no network: no build isolation, no dependencies)
    into a folder that the subprocesses put on their path."""
    import shutil

    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "plugins"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    # (a copy: building in place would leave build/ and *.egg-info in the checkout)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (target / "optbench_example" / "lion.py").is_file()
    return target


def test_an_installed_package_registers_through_entry_points(installed, tmp_path):
    env = _env(installed)
    listing = _cli(env, "list")
    assert listing.returncode == 0, listing.stderr
    assert "lion             [entry point optbench-example-plugins 0.1.0]" in listing.stdout
    assert "mixer_images     [entry point optbench-example-plugins 0.1.0]" in listing.stdout
    assert "adamw            [built-in]" in listing.stdout
    out = tmp_path / "o"
    proc = _cli(
        env,
        "run",
        "--task",
        "mixer_images",
        "--optimizer",
        "lion",
        "--steps",
        "20",
        "--out",
        str(out),
        "--set",
        "lr=1e-3",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = records.read_runs(out).iloc[0]
    assert row["optimizer"] == "lion" and row["task"] == "mixer_images" and row["status"] == "ok"
    assert row["optimizer_origin"] == "entry point optbench-example-plugins 0.1.0"
    assert row["optimizer_version"] == row["task_version"] == "0.1.0"
    assert row["final_train_loss"] < 2.3  # below chance (ln 10) after 20 steps: Lion trains the Mixer
