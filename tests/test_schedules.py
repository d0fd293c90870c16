"""harness.run.schedules: the loop's schedules reproduced bit for bit, WSD by hand and by its properties,
and the budget-branch arithmetic (a branch from the full run's stable phase is a from-scratch run)."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import pytest

from harness.errors import UserError
from harness.run import schedules
from harness.run.schedules import (
    BranchPoint,
    Schedule,
    ScheduleError,
    branch_points,
    budget_steps,
    decay_start,
    lr_factor,
)

FRACTIONS = (0.05, 0.1, 0.2, 1 / 3, 0.5, 0.75, 0.999, 1.0)


def _same(a: float, b: float) -> bool:
    return float(a).hex() == float(b).hex()


def _original_lr_factor(step, total, warmup, kind, min_ratio=0.0):
    """``harness.run.loop.lr_factor`` as it was before ``harness.run.schedules`` (commit addf1f6), frozen here so
    the equivalence stays a real check once the loop calls ``harness.run.schedules``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    span = max(1, total - warmup - 1)
    progress = min(1.0, (step - warmup) / span)
    if kind == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        shape = 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * shape


def _loop_lr_factor():
    from harness.run import loop

    return loop.lr_factor


@pytest.mark.parametrize("reference", [_original_lr_factor, _loop_lr_factor], ids=["original", "loop"])
def test_old_kinds_match_the_loop_bit_for_bit(reference):
    loop_factor = reference if reference is _original_lr_factor else reference()
    checked = 0
    for total in (1, 2, 3, 5, 10, 37, 100, 1001):
        for warmup in sorted({0, 1, 2, 5, total // 20, total // 3, total - 1, total, total + 3}):
            for kind in ("constant", "cosine", "linear"):
                for low in (0.0, 0.01, 0.1, 1 / 3, 1.0):
                    sched = Schedule(kind, warmup, low)
                    for step in range(total):
                        mine, theirs = lr_factor(step, total, sched), loop_factor(step, total, warmup, kind, low)
                        assert _same(mine, theirs), (step, total, warmup, kind, low, mine, theirs)
                        checked += 1
    assert checked > 100_000


def test_warmup_from_a_task_fraction_rounds_as_the_loop_does():
    # The loop: int(round(warmup_fraction * total)), Python's round: 2.5 -> 2, 3.5 -> 4.
    assert Schedule.from_fraction("cosine", 0.05, 50).warmup_steps == 2
    assert Schedule.from_fraction("cosine", 0.05, 70).warmup_steps == 4
    assert Schedule.from_fraction("linear", 0.0, 10, 0.1) == Schedule("linear", 0, 0.1)
    w = Schedule.from_fraction("wsd", 0.1, 200, decay_fraction=0.2, decay_shape="sqrt")
    assert (w.warmup_steps, w.decay_fraction, w.decay_shape) == (20, 0.2, "sqrt")
    with pytest.raises(ScheduleError, match=r"warmup_fraction must be a number in \[0, 1\)"):
        Schedule.from_fraction("cosine", 1.0, 10)


def test_wsd_by_hand():
    # T = 10, W = 2, decay 0.5 of 10 = 5 steps: D = 5; p = (step - 5) / 4 over steps 5..9.
    lin = Schedule("wsd", 2, 0.1, decay_fraction=0.5)
    assert decay_start(10, lin) == 5 and lin.decay_shape == "linear"
    got = [lr_factor(s, 10, lin) for s in range(10)]
    assert got[:6] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert got[6:] == pytest.approx([0.1 + 0.9 * 0.75, 0.1 + 0.9 * 0.5, 0.1 + 0.9 * 0.25, 0.1])
    sqrt = Schedule("wsd", 2, 0.1, decay_fraction=0.5, decay_shape="sqrt")
    got = [lr_factor(s, 10, sqrt) for s in range(10)]
    assert got[:6] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert got[6:] == pytest.approx(
        [0.1 + 0.9 * (1 - 0.5), 0.1 + 0.9 * (1 - math.sqrt(0.5)), 0.1 + 0.9 * (1 - math.sqrt(0.75)), 0.1]
    )
    assert got[9] == 0.1  # exactly min_lr_ratio at the last step


def test_decay_and_budget_lengths_round_half_up():
    assert schedules.decay_steps(5, Schedule("wsd", decay_fraction=0.5)) == 3  # 2.5 -> 3 (round() gives 2)
    assert schedules.decay_steps(10, Schedule("wsd", decay_fraction=0.25)) == 3  # 2.5 -> 3
    assert schedules.decay_steps(10, Schedule("wsd", decay_fraction=0.24)) == 2  # 2.4 -> 2
    assert schedules.decay_steps(3, Schedule("wsd", decay_fraction=0.1)) == 1  # at least 1
    assert budget_steps(10, 0.25) == 3 and budget_steps(10, 0.24) == 2 and budget_steps(3, 0.1) == 1
    assert budget_steps(1000, 1.0) == 1000


def test_wsd_decaying_right_after_warmup_is_the_linear_schedule():
    for total in (3, 7, 40, 333):
        for warmup in (0, 1, total // 4):
            if total - warmup < 2:
                continue
            for low in (0.0, 0.1):
                wsd = Schedule("wsd", warmup, low, decay_fraction=(total - warmup) / total)
                assert decay_start(total, wsd) == warmup
                linear = Schedule("linear", warmup, low)
                assert all(_same(lr_factor(s, total, wsd), lr_factor(s, total, linear)) for s in range(total))


def _valid_totals(top: int, sched: Schedule) -> list[int]:
    out = []
    for t in range(1, top + 1):
        try:
            decay_start(t, sched)
        except ScheduleError:
            continue
        out.append(t)
    return out


def test_wsd_properties_over_a_grid():
    """Continuity at the decay start, min_lr_ratio at the last step, non-increasing after the warmup,
    and the same factor as the full run at every step before a shorter run's decay."""
    full = 120
    for fraction in FRACTIONS:
        for warmup in (0, 3, 10):
            for low in (0.0, 0.1):
                for shape in ("linear", "sqrt"):
                    sched = Schedule("wsd", warmup, low, decay_fraction=fraction, decay_shape=shape)
                    totals = _valid_totals(full, sched)
                    if full not in totals:
                        continue
                    long = [lr_factor(s, full, sched) for s in range(full)]
                    for total in totals:
                        f = [lr_factor(s, total, sched) for s in range(total)]
                        start = decay_start(total, sched)
                        assert f[start] == pytest.approx(1.0, abs=1e-15) and (start == 0 or f[start - 1] == 1.0)
                        assert f[-1] == low
                        assert all(a >= b for a, b in zip(f[warmup:], f[warmup + 1 :]))
                        assert all(x < 1.0 for x in f[start + 1 :])
                        assert start <= decay_start(full, sched)
                        assert all(_same(a, b) for a, b in zip(f[:start], long[:start]))


def test_decay_start_never_decreases_with_the_run_length():
    for fraction in (*FRACTIONS, 0.123456789, 0.7000000000000001, 1 - 1e-12):
        sched = Schedule("wsd", decay_fraction=fraction)
        lengths = [schedules.decay_steps(t, sched) for t in range(1, 5001)]
        starts = [t - n for t, n in zip(range(1, 5001), lengths)]
        assert all(0 <= b - a <= 1 for a, b in zip(lengths, lengths[1:])), fraction
        assert all(a <= b for a, b in zip(starts, starts[1:])), fraction


def test_wsd_refuses_a_one_step_decay_and_a_decay_inside_the_warmup():
    with pytest.raises(ScheduleError, match="is 1 step; it needs at least 2"):
        decay_start(5, Schedule("wsd", 0, decay_fraction=0.2))
    with pytest.raises(ScheduleError, match="would start at step 80, inside the 90-step warmup"):
        decay_start(100, Schedule("wsd", 90, decay_fraction=0.2))
    # lr_factor refuses it at every step, the warmup steps included
    with pytest.raises(ScheduleError, match="inside the 90-step warmup"):
        lr_factor(0, 100, Schedule("wsd", 90, decay_fraction=0.2))


def test_toy_branch_continues_like_a_from_scratch_run():
    """The wiring in miniature: a deterministic 'training' state advanced with the factor of each step.
    The full run (K steps) is saved after D(T) steps; the branch continues it with the factors of a
    T-step run; a from-scratch T-step run ends in the same state, bit for bit."""
    sched = Schedule("wsd", 4, 0.05, decay_fraction=0.25, decay_shape="sqrt")
    full = 80

    def step(state, s, factor):
        x, m = state
        g = math.sin(1.7 * s + x) + 0.1 * x  # a gradient that depends on the step (the data) and the state
        m = 0.9 * m + g
        return x - 0.05 * factor * m, m

    saved = {}
    points = branch_points(full, [0.25, 0.5, 0.75, 1.0], sched)
    wanted = {p.decay_start for p in points}
    state = (1.0, 0.0)
    for s in range(full):
        if s in wanted:
            saved[s] = copy.copy(state)
        state = step(state, s, lr_factor(s, full, sched))
    for p in points:
        branch = saved[p.decay_start]
        for s in range(p.decay_start, p.steps):
            branch = step(branch, s, lr_factor(s, p.steps, sched))
        scratch = (1.0, 0.0)
        for s in range(p.steps):
            scratch = step(scratch, s, lr_factor(s, p.steps, sched))
        assert branch == scratch, p
    assert branch == state  # the full budget's own point is the full run


def test_branch_points_by_hand_and_sorted():
    sched = Schedule("wsd", 5, decay_fraction=0.2)
    points = branch_points(100, [1.0, 0.25, 0.5], sched)
    # T = 25, 50, 100; L = 5, 10, 20; D = 20, 40, 80
    assert points == [BranchPoint(0.25, 25, 20), BranchPoint(0.5, 50, 40), BranchPoint(1.0, 100, 80)]
    assert points[0].steps == 25 and points[0].decay_start == 20
    # without warmup and with a decay over the whole budget the branch starts from scratch
    assert branch_points(10, [1.0], Schedule("wsd", decay_fraction=1.0)) == [BranchPoint(1.0, 10, 0)]


@pytest.mark.parametrize(
    ("fractions", "sched", "message"),
    [
        ([0.5], Schedule("cosine"), "budgets branch from the stable phase of a wsd schedule; this one is 'cosine'"),
        ([], Schedule("wsd", decay_fraction=0.2), "give at least one fraction"),
        (0.5, Schedule("wsd", decay_fraction=0.2), "budgets are a list of fractions"),
        ([0.0], Schedule("wsd", decay_fraction=0.2), r"fraction of the task's steps in \(0, 1\], got 0.0"),
        ([1.5], Schedule("wsd", decay_fraction=0.2), r"in \(0, 1\], got 1.5"),
        ([math.nan], Schedule("wsd", decay_fraction=0.2), r"in \(0, 1\], got nan"),
        ([True], Schedule("wsd", decay_fraction=0.2), r"in \(0, 1\], got True"),
        (["0.5"], Schedule("wsd", decay_fraction=0.2), r"in \(0, 1\], got '0.5'"),
        ([0.5, 0.5], Schedule("wsd", decay_fraction=0.2), "budgets 0.5 and 0.5 of 100 steps are both 50 steps"),
        ([0.5, 0.504], Schedule("wsd", decay_fraction=0.2), "budgets 0.5 and 0.504 of 100 steps are both 50 steps"),
        (
            [0.2, 1.0],
            Schedule("wsd", 17, decay_fraction=0.2),
            r"budget 0.2 \(20 of 100 steps\): .* would start at step 16, inside the 17-step warmup",
        ),
        ([0.05], Schedule("wsd", decay_fraction=0.2), r"budget 0.05 \(5 of 100 steps\): .* it needs at least 2"),
    ],
)
def test_branch_points_refuse_bad_budgets(fractions, sched, message):
    with pytest.raises(ScheduleError, match=message):
        branch_points(100, fractions, sched)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "step"}, "unknown schedule 'step'; known: constant, cosine, linear, wsd"),
        ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0"),
        ({"warmup_steps": 2.5}, "warmup_steps must be an integer >= 0"),
        ({"warmup_steps": True}, "warmup_steps must be an integer >= 0"),
        ({"min_lr_ratio": 1.5}, r"min_lr_ratio must be a number in \[0, 1\]"),
        ({"min_lr_ratio": math.nan}, r"min_lr_ratio must be a number in \[0, 1\]"),
        ({"kind": "cosine", "decay_fraction": 0.2}, "decay_fraction apply to schedule wsd only"),
        ({"kind": "linear", "decay_shape": "sqrt"}, "decay_shape apply to schedule wsd only"),
        ({"kind": "wsd"}, r"schedule wsd needs decay_fraction.* in \(0, 1\]"),
        ({"kind": "wsd", "decay_fraction": 0.0}, r"decay_fraction must be a number in \(0, 1\]"),
        ({"kind": "wsd", "decay_fraction": 1.2}, r"decay_fraction must be a number in \(0, 1\]"),
        (
            {"kind": "wsd", "decay_fraction": 0.2, "decay_shape": "cosine"},
            "unknown decay_shape 'cosine'; known: linear, sqrt",
        ),
    ],
)
def test_schedule_refuses_bad_values_naming_the_choices(kwargs, message):
    with pytest.raises(ScheduleError, match=message) as info:
        Schedule(**kwargs)
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


def test_lr_factor_refuses_steps_outside_the_run():
    with pytest.raises(ScheduleError, match=r"step 10 is outside the run's steps 0..9"):
        lr_factor(10, 10, Schedule("cosine"))
    with pytest.raises(ScheduleError, match="outside"):
        lr_factor(-1, 10, Schedule("constant"))
    with pytest.raises(ScheduleError, match="total steps must be an integer >= 1"):
        budget_steps(0, 0.5)


def test_mapping_round_trip_and_unknown_keys():
    for sched in (Schedule("cosine", 3, 0.1), Schedule("wsd", 2, 0.0, decay_fraction=0.2, decay_shape="sqrt")):
        assert Schedule.from_mapping(sched.to_dict()) == sched
    assert "decay_fraction" not in Schedule("constant").to_dict()
    with pytest.raises(ScheduleError, match="unknown schedule key.* warmup; known: kind, warmup_steps"):
        Schedule.from_mapping({"kind": "cosine", "warmup": 5})


def test_the_new_modules_import_without_torch():
    code = (
        "import sys; import harness.run.schedules, harness.stats.profiles; "
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch')); "
        "print(harness.run.schedules.lr_factor(9, 10, harness.run.schedules.Schedule('wsd', decay_fraction=0.5)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.0"]


def test_torch_adamw_branch_is_a_from_scratch_run_bit_for_bit():
    """The same with a real optimizer on CPU (a template for the loop-level test): AdamW on a small
    regression, the LR set per step from ``lr_factor``; the full run's model, optimizer and data
    generator are saved after D(T) steps, a branch continues them with the factors of a T-step run."""
    import torch

    sched = Schedule("wsd", 3, 0.0, decay_fraction=0.3, decay_shape="sqrt")
    full, base_lr = 40, 0.05

    def fresh():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        return model, torch.optim.AdamW(model.parameters(), lr=base_lr), torch.Generator().manual_seed(1)

    def train(model, opt, gen, start, stop, total, keep=()):
        saved = {}
        for s in range(start, stop):
            if s in keep:
                saved[s] = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()), gen.get_state())
            for group in opt.param_groups:
                group["lr"] = base_lr * lr_factor(s, total, sched)
            x = torch.randn(32, 6, generator=gen)
            loss = torch.nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True).sin())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return saved

    points = branch_points(full, [0.5, 0.75], sched)
    model, opt, gen = fresh()
    saved = train(model, opt, gen, 0, full, full, keep={p.decay_start for p in points})
    for p in points:
        m_state, o_state, g_state = saved[p.decay_start]
        branch, b_opt, b_gen = fresh()
        branch.load_state_dict(m_state)
        b_opt.load_state_dict(o_state)
        b_gen.set_state(g_state)
        train(branch, b_opt, b_gen, p.decay_start, p.steps, p.steps)
        scratch, s_opt, s_gen = fresh()
        train(scratch, s_opt, s_gen, 0, p.steps, p.steps)
        for a, b in zip(branch.parameters(), scratch.parameters()):
            assert torch.equal(a, b), p
        # and the branch really differs from the full run at the same step count (its LR decayed)
        other, o_opt, o_gen = fresh()
        train(other, o_opt, o_gen, 0, p.steps, full)
        assert not all(torch.equal(a, b) for a, b in zip(branch.parameters(), other.parameters()))
