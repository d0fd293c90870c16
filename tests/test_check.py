"""`optbench check`: the quick CPU check as a real subprocess, an injected fault that fails it, bad input,
and what CPU can exercise of the CUDA path (bf16 autocast, CUDA-event timing with fakes, MFU and NS5
flop arithmetic with a fake clock)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import optimizers
import tasks
from harness.check import cli as check
from harness.check import env as check_env
from harness.check import sections as check_sections
from harness.check import smoke as check_smoke
from harness.check import speed as check_speed
from harness.check import step as check_step
from harness.check.speed import Case
from harness.cli import main as cli_main
from harness.run import loop
from harness.run.resolve import resolve

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    """time.perf_counter stand-in: returns ``now`` and advances it by ``tick`` on every call."""

    def __init__(self, tick: float = 0.0):
        self.now, self.tick = 100.0, tick

    def __call__(self) -> float:
        value = self.now
        self.now += self.tick
        return value


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# --- the command, end to end ------------------------------------------------------------------


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_quick_cpu_check_subprocess(tmp_path):
    out = tmp_path / "chk"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "check", "--device", "cpu", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for header in ("== environment", "== smoke", "== optimizer_step", "== throughput", "== ns5", "== summary"):
        assert header in text
    assert "check all passed" in text

    rows = read_csv(out / "check_cpu.csv")
    assert {r["device"] for r in rows} == {"cpu"}
    by_section: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_section.setdefault(r["section"], []).append(r)
    # Smoke: every task x optimizer of the registries, fp32 and bf16 (CPU autocast works in this torch).
    smoke = by_section["smoke"]
    assert len(smoke) == 2 * len(tasks.REGISTRY) * len(optimizers.REGISTRY)
    assert all(r["status"] in (check_smoke.PASS, check_smoke.PASS_RETRY) for r in smoke), smoke
    for t in tasks.REGISTRY:
        for o in optimizers.REGISTRY:
            assert f"{t}/{o}" in {r["item"] for r in smoke}
            assert f"{t}/{o} [bf16]" in {r["item"] for r in smoke}
    # The smoke matrix names every optimizer in its header.
    header = next(line for line in text.splitlines() if line.strip().startswith("task ") and "fp32|bf16" in line)
    assert all(o in header for o in optimizers.REGISTRY)
    # Optimizer steps: every registered optimizer on both sets, as a ratio to torch's AdamW.
    steps = by_section["optimizer_step"]
    for set_name in ("a", "b"):
        assert {r["item"].split()[1] for r in steps if r["item"].startswith(set_name + " ")} == set(optimizers.REGISTRY)
    adamw = [float(r["ratio"]) for r in steps if r["item"].endswith("adamw step")]
    # AdamW against itself: about 1 (loose: other people's jobs share this machine's two cores).
    assert len(adamw) == 2 and all(0.05 < x < 20 for x in adamw)
    # Throughput of every task family in its own unit; NS5 in TFLOP/s.
    units = {r["item"].split(":")[0]: r["unit"] for r in by_section["throughput"]}
    assert units == {
        "cifar_resnet": "images/s",
        "gnn_graphland": "nodes/s",
        "llm": "tokens/s",
        "lstm_lm": "tokens/s",
        "tabular_mlp": "rows/s",
    }
    assert all(float(r["value"]) > 0 for r in by_section["throughput"] + by_section["ns5"])

    report = json.loads((out / "check_cpu.json").read_text())
    assert report["device"] == "cpu" and report["exit_code"] == 0 and report["failures"] == []
    for r in report["optimizer_step"]:  # each ratio is the step time over its own paired AdamW time
        assert r["ms"] >= 0 and r["adamw_ms"] > 0  # a build may measure as 0 (clamped at 0 when noise wins)
        assert r["ratio"] == pytest.approx(r["ms"] / r["adamw_ms"])
    assert report["environment"]["packages"]["torch_geometric"]["status"] == "ok"
    assert set(report["sections"]) == set(check.SECTIONS)


def _raising_build(groups, hparams, total_steps):
    raise RuntimeError("injected fault\nsecond line is not reported")


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_injected_fault_exits_1_and_names_the_cells(monkeypatch, tmp_path, capsys):
    broken = dataclasses.replace(optimizers.REGISTRY["signum"], build_fn=_raising_build)
    monkeypatch.setitem(optimizers.REGISTRY, "signum", broken)
    code, report = check.run_check(torch.device("cpu"), quick=True, out=tmp_path, sections=("smoke",))
    assert code == 1
    failed = {r["item"] for r in report.failures()}
    expected = {f"{t}/signum" for t in tasks.REGISTRY} | {f"{t}/signum [bf16]" for t in tasks.REGISTRY}
    assert failed == expected
    assert all(r["detail"] == "RuntimeError: injected fault" for r in report.failures())
    captured = capsys.readouterr()
    assert "llm/signum: RuntimeError: injected fault" in captured.err
    assert "FAIL" in captured.out and "check FAILED (10)" in captured.out
    rows = read_csv(tmp_path / "check_cpu.csv")
    assert {r["item"] for r in rows if r["status"] == "FAIL"} == expected
    assert json.loads((tmp_path / "check_cpu.json").read_text())["exit_code"] == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--device", "tpu"], "unknown device 'tpu'; known: cpu, cuda, cuda:N, mps"),
        (["--device", "cuda"], "CUDA is not available"),
        (["--device", "cpu", "--peak-tflops", "-3"], "invalid --peak-tflops"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, message):
    assert not torch.cuda.is_available()  # conftest hides GPUs
    out = tmp_path / "never"
    assert cli_main(["check", *argv, "--quick", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# --- smoke classification ---------------------------------------------------------------------


def test_divergence_at_defaults_passes_after_lr_retry_but_not_twice():
    cell = check_smoke.Cell("tabular_mlp", "muon")
    seen = []

    def diverge_unless_lowered(cell, device, steps, hparams):
        seen.append(hparams)
        ok = hparams is not None
        return {"status": "ok" if ok else "diverged", "status_detail": "" if ok else "non-finite loss at step 3"}

    row = check_smoke.run_cell(cell, torch.device("cpu"), 4, run_fn=diverge_unless_lowered)
    assert row["status"] == check_smoke.PASS_RETRY and "non-finite loss at step 3" in row["detail"]
    defaults = optimizers.REGISTRY["muon"].defaults
    assert seen[1] == {"lr": defaults["lr"] * 0.1, "aux_lr": defaults["aux_lr"] * 0.1}

    def always_diverge(cell, device, steps, hparams):
        return {"status": "diverged", "status_detail": "non-finite loss at step 2"}

    row = check_smoke.run_cell(cell, torch.device("cpu"), 4, run_fn=always_diverge)
    assert row["status"] == check_smoke.FAIL and "x0.1" in row["detail"]


def test_scaled_lrs_finds_every_learning_rate_key():
    hp = {"lr": 0.02, "aux_lr": 1e-3, "lr_sgd": 0.5, "warmup": 3, "flr": 1.0, "nesterov": True}
    assert check_smoke.scaled_lrs(hp, 0.1) == pytest.approx({"lr": 0.002, "aux_lr": 1e-4, "lr_sgd": 0.05})


def _sleepy_build(groups, hparams, total_steps):
    time.sleep(30)  # interrupted by the cell's time limit
    raise AssertionError("the time limit did not fire")


def test_a_cell_past_its_time_limit_fails_and_the_smoke_goes_on(monkeypatch, tmp_path):
    slow = dataclasses.replace(optimizers.REGISTRY["adamw"], name="slowopt", build_fn=_sleepy_build)
    monkeypatch.setitem(optimizers.REGISTRY, "slowopt", slow)
    # The first cell of a process pays for imports and the data (about 5 s on a busy 2-core machine,
    # 0.13 s after): warm up without a limit, so the limit below can only stop the sleeping cell.
    monkeypatch.setattr(check_smoke, "cells", lambda amp_modes: [check_smoke.Cell("tabular_mlp", "adamw")])
    warm, _ = check.run_check(torch.device("cpu"), quick=True, out=tmp_path / "warm", sections=("smoke",))
    assert warm == 0
    monkeypatch.setattr(
        check_smoke,
        "cells",
        lambda amp_modes: [check_smoke.Cell("tabular_mlp", "slowopt"), check_smoke.Cell("tabular_mlp", "adamw")],
    )
    quick = check.plan_for("cpu", True)
    monkeypatch.setattr(check, "plan_for", lambda device_type, quick_: dataclasses.replace(quick, smoke_cell_s=4))
    code, report = check.run_check(torch.device("cpu"), quick=True, out=tmp_path, sections=("smoke",))
    assert code == 1
    smoke = {r["label"]: r for r in report.details["smoke"]}
    assert (
        smoke["tabular_mlp/slowopt"]["status"] == "FAIL"
        and "timed out after 4s" in smoke["tabular_mlp/slowopt"]["detail"]
    )
    assert smoke["tabular_mlp/adamw"]["status"] == "pass"


def test_a_failing_measurement_is_recorded_and_the_section_goes_on(monkeypatch, tmp_path):
    quick = check.plan_for("cpu", True)
    cases = (Case("llm", "tiny", dataset="c4"), Case("tabular_mlp", "tiny"))  # c4 is not there offline
    monkeypatch.setattr(check, "plan_for", lambda device_type, quick_: dataclasses.replace(quick, cases=cases))
    code, report = check.run_check(torch.device("cpu"), quick=True, out=tmp_path, sections=("throughput",))
    assert code == 1
    status = {r["item"].split(" ")[0]: (r["status"], r["detail"]) for r in report.rows}
    assert status["llm:tiny"][0] == "failed" and "c4" in status["llm:tiny"][1]
    assert status["tabular_mlp:tiny"][0] == "ok"


def test_a_crashing_section_is_recorded_and_the_next_one_runs(monkeypatch, tmp_path):
    def broken(*args):
        raise KeyError("a bug in the section itself")

    monkeypatch.setattr(check_sections, "throughput", broken)
    code, report = check.run_check(torch.device("cpu"), quick=True, out=tmp_path, sections=("throughput", "ns5"))
    assert code == 1
    assert [(r["item"], r["status"]) for r in report.rows if r["section"] == "throughput"] == [("section", "failed")]
    assert {r["status"] for r in report.rows if r["section"] == "ns5"} == {"ok"}


def test_results_are_on_disk_after_each_section(monkeypatch, tmp_path):
    def killed(*args):  # the session's time limit ends the process during the last section
        raise KeyboardInterrupt

    monkeypatch.setattr(check_sections, "ns5", killed)
    with pytest.raises(KeyboardInterrupt):
        check.run_check(torch.device("cpu"), quick=True, out=tmp_path, sections=("throughput", "ns5"))
    rows = read_csv(tmp_path / "check_cpu.csv")
    assert {r["item"].split(" ")[0] for r in rows} == {f"{t}:tiny" for t in tasks.REGISTRY}
    assert json.loads((tmp_path / "check_cpu.json").read_text())["exit_code"] is None  # not finished


def test_time_limit_restores_the_outer_timer():
    before_handler = signal.getsignal(signal.SIGALRM)
    before = signal.getitimer(signal.ITIMER_REAL)[0]
    t0 = time.monotonic()
    with pytest.raises(check_sections.CheckTimeout, match="timed out after 0s"):
        with check_sections.time_limit(0.2):
            while True:
                sum(range(1000))
    after = signal.getitimer(signal.ITIMER_REAL)[0]
    assert signal.getsignal(signal.SIGALRM) == before_handler
    if before > 0:  # pytest-timeout's alarm (signal method) keeps running with the time it had left
        assert before - (time.monotonic() - t0) - 0.5 < after <= before
    else:
        assert after == 0


# --- environment ------------------------------------------------------------------------------


def test_dataset_presence_asks_the_task_modules(tmp_path):
    rows = {(r["task"], r["dataset"]): r for r in check_env.dataset_presence(tmp_path)}
    assert rows[("llm", "pydoc")]["status"] == "available"
    assert rows[("tabular_mlp", "digits")]["status"] == "available"
    missing = rows[("cifar_resnet", "cifar10")]
    assert missing["status"] == "missing" and str(tmp_path / "cifar") in missing["detail"]
    assert not any(":" in d or "<" in d for _, d in rows)  # patterns such as path:FILE are not probed
    # Put the files the task looks for in place: now the task itself says it is there.
    from tasks import cifar_resnet

    folder, files, _ = cifar_resnet.CIFAR_FILES["cifar10"]
    (tmp_path / "cifar" / folder).mkdir(parents=True)
    for name in files:
        (tmp_path / "cifar" / folder / name).write_bytes(b"")
    rows = {(r["task"], r["dataset"]): r for r in check_env.dataset_presence(tmp_path)}
    assert rows[("cifar_resnet", "cifar10")]["status"] == "available"


def test_package_status_reports_missing_and_broken_packages():
    assert check_env.package_status("no-such-dist-xyz", "no_such_module_xyz") == {
        "version": "",
        "status": "not installed",
    }
    broken = check_env.package_status("pytest", "no_such_module_xyz")  # installed, but the import fails
    assert broken["version"] and broken["status"].startswith("import fails: ModuleNotFoundError")
    assert check_env.package_status("pytest", "pytest")["status"] == "ok"


def test_environment_without_optuna_and_datasets(monkeypatch, tmp_path):
    """As on a GPU box with only torch: absent optional stacks are lines of the report, not crashes."""
    import importlib.metadata

    real_version = importlib.metadata.version

    def version(dist):
        if dist in ("optuna", "datasets"):
            raise importlib.metadata.PackageNotFoundError(dist)
        return real_version(dist)

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setitem(sys.modules, "optuna", None)  # any import of them fails
    monkeypatch.setitem(sys.modules, "datasets", None)
    env = check_env.collect(torch.device("cpu"), tmp_path)
    assert env["packages"]["optuna"] == env["packages"]["datasets"] == {"version": "", "status": "not installed"}
    assert "optbench[sweep]" in env["optuna_storage"]["status"]
    wikitext = next(r for r in env["datasets"] if r["dataset"] == "wikitext2")
    assert wikitext["status"] == "missing" and "optional package" in wikitext["detail"]
    assert not [r for r in env["datasets"] if r["status"] == "error"]


def test_forced_offline_restores_the_environment(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("OPTBENCH_OFFLINE", "0")
    with check_env.forced_offline():
        from harness import paths

        assert paths.offline() and os.environ["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["OPTBENCH_OFFLINE"] == "0"


# --- what CPU can exercise of the CUDA path ---------------------------------------------------


def test_loop_runs_forward_and_eval_under_bf16_autocast_on_cpu():
    seen: list[tuple[str, bool, torch.dtype]] = []

    def spy(fn, where):
        def wrapped(*args):
            seen.append((where, torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
            return fn(*args)

        return wrapped

    results = {}
    for amp in (None, "bf16"):
        spec, task = resolve(task="llm", optimizer="adamw", size="tiny", steps=6, amp=amp)
        task = dataclasses.replace(task, loss=spy(task.loss, "loss"), evaluate=spy(task.evaluate, "eval"))
        seen.clear()
        results[amp] = loop.run(spec, task=task, device="cpu", progress=False)
        assert results[amp].row["status"] == "ok" and results[amp].row["amp"] == (amp or "")
        enabled = {where: (on, dtype) for where, on, dtype in seen}
        if amp == "bf16":
            assert enabled == {"loss": (True, torch.bfloat16), "eval": (True, torch.bfloat16)}
        else:
            assert {on for _, on, _ in seen} == {False}
    fp32, bf16 = results[None].curve("train", "loss"), results["bf16"].curve("train", "loss")
    assert len(fp32) == len(bf16) == 6 and all(math.isfinite(v) for v in bf16)
    assert fp32 != bf16  # bf16 matmuls really ran: the losses are rounded differently...
    assert bf16 == pytest.approx(fp32, rel=0.05)  # ...and stay close to fp32


class FakeEvent:
    """torch.cuda.Event stand-in that stamps a fake clock on record()."""

    clock = FakeClock()

    def __init__(self, enable_timing: bool = False):
        assert enable_timing
        self.t: float | None = None

    def record(self, stream=None):
        self.t = FakeEvent.clock.now

    def elapsed_time(self, end: FakeEvent) -> float:
        return (end.t - self.t) * 1000.0  # milliseconds, as CUDA events report


def test_loop_timer_uses_cuda_events_without_host_syncs(monkeypatch):
    syncs = []
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: syncs.append(device))
    timer = loop._Timer(torch.device("cuda"))
    for seconds in (0.25, 0.5, 0.125):
        with timer():
            FakeEvent.clock.now += seconds
        FakeEvent.clock.now += 10.0  # time outside the step is not counted
    assert syncs == []  # the steps never wait for the host
    assert timer.total() == pytest.approx(0.875)
    assert len(syncs) == 1  # one sync, when the events are read at the end


def test_step_timing_synchronises_around_the_step(monkeypatch):
    syncs = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: syncs.append(device))
    clock, cpu_clock = FakeClock(), FakeClock()

    def step():
        assert len(syncs) == 1  # queued work finished before the clock started
        clock.now += 0.003
        cpu_clock.now += 0.001

    wall, cpu = check_step.timed(step, torch.device("cuda"), clock=clock, cpu_clock=cpu_clock)
    assert (wall, cpu) == (pytest.approx(0.003), pytest.approx(0.001)) and len(syncs) == 2


def test_mfu_arithmetic_with_a_fake_clock():
    steps, peak = 3, 2e-6  # TFLOP/s: a made-up peak, so the MFU is a plain number to check
    row = check_speed.measure(
        Case("llm", "tiny"),
        torch.device("cpu"),
        steps=steps,
        warmup=0,
        amp=False,
        compile=False,
        llm_batch=None,
        data_dir=None,
        peak=peak,
        clock=FakeClock(tick=0.5),
    )
    task = tasks.make("llm", size="tiny")
    model = task.make_model(torch.Generator().manual_seed(0))
    cfg = model.cfg
    # Independent count (PaLM appendix B; nanoGPT estimate_mfu): 6 N over the matmul weights (block
    # linears and the lm head) + 12 L d T for attention.
    n_matmul = sum(p.numel() for name, p in model.named_parameters() if name.startswith("blocks.") and p.ndim == 2)
    n_matmul += model.lm_head.weight.numel()
    per_token = 6 * n_matmul + 12 * cfg.n_layers * cfg.d_model * cfg.ctx
    tokens = steps * task.batch_size * cfg.ctx
    assert row["batch_items"] == task.batch_size * cfg.ctx and row["unit"] == "tokens"
    assert row["items_per_s"] == pytest.approx(tokens / 0.5)  # the fake clock: 0.5 s between its two reads
    assert row["flops_per_item"] == pytest.approx(per_token)
    assert row["tflops_per_s"] == pytest.approx(per_token * tokens / 0.5 / 1e12)
    assert row["mfu"] == pytest.approx(per_token * tokens / 0.5 / 1e12 / peak)


def test_ns5_flop_count_matches_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    from optimizers.muon import newton_schulz5

    for batch, rows, cols in ((2, 16, 48), (1, 40, 24)):
        with FlopCounterMode(display=False) as counter:
            newton_schulz5(torch.randn(batch, rows, cols))
        assert counter.get_total_flops() == batch * check_speed.ns5_flops(rows, cols)
    row = check_speed.time_ns5(2, 16, 48, torch.device("cpu"), repeats=3, peak=1e-3, clock=FakeClock(tick=0.01))
    assert row["tflops_per_s"] == pytest.approx(2 * check_speed.ns5_flops(16, 48) / 0.01 / 1e12)
    assert row["frac_peak"] == pytest.approx(row["tflops_per_s"] / 1e-3)


def test_bf16_newton_schulz_and_muon_run_on_cpu():
    """The CUDA default (NS5 in bf16) on CPU: close to the fp32 iteration, and a tiny run trains with it."""
    from optimizers.muon import newton_schulz5

    G = torch.randn(3, 32, 64, generator=torch.Generator().manual_seed(0))
    fp32, bf16 = newton_schulz5(G, dtype=torch.float32), newton_schulz5(G, dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32 and bf16.shape == G.shape
    assert ((bf16 - fp32).norm() / fp32.norm()).item() < 0.05
    spec, task = resolve(
        task="llm", optimizer="muon", size="tiny", steps=6, amp="bf16", hparams={"ns_dtype": "bfloat16"}
    )
    assert loop.run(spec, task=task, device="cpu", progress=False).row["status"] == "ok"


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.0),
        ("NVIDIA H200", 989.4),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100 80GB PCIe", 312.0),
        ("NVIDIA A10G", 125.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA L40S", 362.05),
        ("NVIDIA GeForce RTX 4090", 165.2),
        ("Tesla T4", None),
        (None, None),
    ],
)
def test_peak_table(name, peak):
    assert check_speed.peak_tflops(name)[0] == peak
    assert check_speed.peak_tflops(name, 123.0) == (123.0, "--peak-tflops")


@pytest.mark.slow
def test_gpu_session_script_dry_run_on_cpu(tmp_path):
    """The prepared GPU session's plumbing (check, per-task runs, tables, copy to $OUT), at tiny size on
    CPU: a lent GPU's minutes must not go to a typo in the script."""
    copy = tmp_path / "out"
    copy.mkdir()
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        GPU_SESSION_DEVICE="cpu",
        GPU_SESSION_SIZE="tiny",
        GPU_SESSION_STEPS="3",
        GPU_SESSION_CHECK_ARGS="--quick",
        GPU_SESSION_RESULTS=str(tmp_path / "res"),
        OUT=str(copy),
    )
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_session.sh")], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "all parts passed" in proc.stdout
    smoke = read_csv(tmp_path / "res" / "paper_smoke_cpu.csv")
    assert sorted(r["task"] for r in smoke) == sorted(tasks.REGISTRY)
    assert {r["status"] for r in smoke} == {"ok"} and {r["steps_done"] for r in smoke} == {"3"}
    assert sorted(p.name for p in copy.iterdir()) == [
        "check_cpu.csv",
        "check_cpu.json",
        "gpu_session_cpu.log",
        "paper_smoke_cpu.csv",
    ]
