"""harness.stats.profiles against hand-computed values: time-to-target, derived targets, medians with
misses, AlgoPerf ratios, exact profiles and integrated scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.errors import UserError
from harness.stats import intervals as stats
from harness.stats.profiles import (
    R_MAX,
    ProfileError,
    derive_target,
    integrated_score,
    median_ci,
    profile_steps,
    time_ratios,
    time_to_target,
)

INF = math.inf


# ------------------------------------------------------------------------------------ time-to-target


def test_time_to_target_first_eval_at_least_as_good():
    steps, loss = [10, 20, 30, 40], [3.0, 2.5, 2.0, 1.9]
    assert time_to_target(steps, loss, 2.0, "min", seconds=0.5) == (30.0, 15.0)  # equal counts
    assert time_to_target(steps, loss, 2.2, "min", seconds=[1.0, 2.0, 3.5, 4.0]) == (30.0, 3.5)
    acc = [0.5, 0.7, 0.7, 0.9]
    assert time_to_target(steps, acc, 0.7, "max", seconds=[1.0, 2.0, 3.0, 4.0]) == (20.0, 2.0)
    assert time_to_target(steps, acc, 0.95, "max", seconds=0.1) == (INF, INF)
    s, sec = time_to_target(steps, acc, 0.6, "max")
    assert s == 20.0 and math.isnan(sec)  # reached, seconds unknown
    assert time_to_target(steps, acc, 1.0, "max") == (INF, INF)  # a miss is infinite either way
    assert time_to_target([], [], 1.0, "min") == (INF, INF)


def test_time_to_target_sorts_by_step_and_nan_never_reaches():
    assert time_to_target([30, 10, 20], [1.0, 5.0, math.nan], 2.0, "min", seconds=[3.0, 1.0, 2.0]) == (30.0, 3.0)
    assert time_to_target([10, 20], [math.nan, math.nan], 1e9, "min") == (INF, INF)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([10], [1.0], None, "min"), {}, "needs a target number, got None"),
        (([10], [1.0], math.nan, "min"), {}, "needs a target number"),
        (([10, 20], [1.0], 1.0, "min"), {}, "one value per step: 2 steps, 1 values"),
        (([10, 10], [1.0, 2.0], 1.0, "min"), {}, "has step 10 twice"),
        (([1.5], [1.0], 1.0, "min"), {}, "eval steps must be integers >= 0"),
        (([10, 20], [1.0, 2.0], 1.0, "min"), {"seconds": [2.0, 1.0]}, "non-decreasing"),
        (([10, 20], [1.0, 2.0], 1.0, "min"), {"seconds": [2.0]}, "one value per eval step"),
        (([10], [1.0], 1.0, "min"), {"seconds": -1.0}, "seconds per step must be a number >= 0"),
    ],
)
def test_time_to_target_refuses_bad_curves(args, kwargs, message):
    with pytest.raises(ProfileError, match=message) as info:
        time_to_target(*args, **kwargs)
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


def test_time_to_target_refuses_an_unknown_direction():
    with pytest.raises(ValueError, match="'max' or 'min'"):
        time_to_target([10], [1.0], 1.0, "up")


def test_time_to_target_agrees_with_the_loops_steps_to_target():
    """The loop counts steps-to-target online; the same rule from its recorded val curve."""
    import torch
    from torch import nn

    from harness.run.loop import run
    from harness.spec import RunSpec
    from harness.task import Metric, Task, roles_by_module

    class Data:
        def __init__(self, device):
            g = torch.Generator().manual_seed(5)
            self.x = torch.randn(256, 4, generator=g)
            self.y = self.x @ torch.randn(4, 1, generator=g)

        def batches(self, generator, rank=0, world_size=1):
            while True:
                idx = torch.randint(0, 192, (32,), generator=generator)
                yield self.x[idx], self.y[idx]

    def model(generator):
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

    def evaluate(m, data, split):
        sl = slice(192, 224) if split == "val" else slice(224, 256)
        mse = nn.functional.mse_loss(m(data.x[sl]), data.y[sl]).item()
        return {"rmse": math.sqrt(mse), "loss": mse}

    def task(target):
        return Task(
            name="toy",
            dataset="toy",
            size="tiny",
            metric=Metric("rmse", "min"),
            steps=40,
            eval_every=4,
            make_model=model,
            make_data=Data,
            loss=lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]),
            evaluate=evaluate,
            roles=lambda m: roles_by_module(m, head=m[2]),
            penalty=10.0,
            target=target,
        )

    spec = RunSpec(task="toy", optimizer="adamw", dataset="toy", steps=40, hparams={"lr": 3e-2})
    first = run(spec, task=task(None))
    curve = sorted((c["step"], c["value"]) for c in first.curves if c["split"] == "val" and c["name"] == "rmse")
    values = [v for _, v in curve]
    assert len(curve) == 10 and min(values) < values[0]
    for target in (values[4], (values[0] + min(values)) / 2, min(values) / 2):  # hit exactly, between, never
        row = run(spec, task=task(target)).row
        steps, _ = time_to_target([s for s, _ in curve], values, target, "min")
        assert steps == (INF if row["steps_to_target"] is None else row["steps_to_target"]), target
    assert time_to_target([s for s, _ in curve], values, values[4], "min")[0] <= curve[4][0]


# ------------------------------------------------------------------------------------------- targets


def test_derive_target_median_of_the_reference_with_divergence_as_worst():
    assert derive_target({"adamw": [0.9, 0.8, 0.85], "sgd": [0.1]}, "max", "adamw") == 0.85
    assert derive_target({"adamw": [0.9, math.nan, 0.85]}, "max", "adamw") == 0.85  # nan -> -inf
    assert derive_target({"adamw": [1.0, math.nan, 2.0]}, "min", "adamw") == 2.0  # nan -> +inf
    assert derive_target({"adamw": [1.0, 3.0]}, "min", "adamw") == 2.0
    with pytest.raises(ProfileError, match="2 of 3 runs of the reference optimizer 'adamw' ended without"):
        derive_target({"adamw": [math.nan, math.inf, 1.0]}, "min", "adamw")
    with pytest.raises(
        ProfileError, match=r"reference optimizer 'adamw' has no .* \(optimizers with runs: muon, sgd\)"
    ):
        derive_target({"sgd": [1.0], "muon": [2.0], "lion": []}, "min", "adamw")


# ------------------------------------------------------------------------------------------- medians


def test_median_with_misses_by_hand():
    assert median_ci([3.0, 1.0, 2.0]).median == 2.0
    assert median_ci([1.0, 2.0, 3.0, INF]).median == 2.5
    assert median_ci([1.0, 2.0, INF, INF]).median == INF  # half missed: (2 + inf) / 2
    assert (median_ci([INF, INF]).median, median_ci([INF, INF]).lo, median_ci([INF, INF]).hi) == (INF, INF, INF)
    one = median_ci([5.0])
    assert one.median == 5.0 and math.isnan(one.lo) and math.isnan(one.hi) and one.n == 1
    same = median_ci([4.0, 4.0, 4.0])
    assert (same.lo, same.hi) == (4.0, 4.0)
    empty = median_ci([])
    assert empty.n == 0 and math.isnan(empty.median)
    assert median_ci([1.0, INF, 2.0]).missed == 1


def test_median_interval_two_points_by_hand():
    # Resampled medians of {1, 3}: 1 (p 1/4), 2 (p 1/2), 3 (p 1/4): the 2.5% and 97.5% points are 1 and 3.
    got = median_ci([1.0, 3.0])
    assert (got.median, got.lo, got.hi) == (2.0, 1.0, 3.0)
    # {1, inf}: medians 1 (p 1/4), inf (p 3/4): the median is inf, the interval [1, inf].
    got = median_ci([1.0, INF])
    assert (got.median, got.lo, got.hi, got.missed) == (INF, 1.0, INF, 1)


def test_median_interval_matches_the_exact_bootstrap_distribution():
    """n = 3 resamples enumerated (27, equally likely): the quantiles of the seeded bootstrap are the
    exact ones (each end carries >= 1/27 > 2.5% of the mass)."""
    import itertools

    x = [1.0, 5.0, INF]
    exact = sorted(sorted(c)[1] for c in itertools.product(x, repeat=3))
    got = median_ci(x, seed=3)
    assert (got.lo, got.hi) == (exact[0], exact[-1]) == (1.0, INF)
    assert got.median == 5.0


def test_median_interval_is_seeded_and_inside_the_range():
    x = [12.0, 15.0, 11.0, 30.0, 14.0, 13.0, 18.0]
    a, b = median_ci(x), median_ci(list(x))
    assert a == b
    assert min(x) <= a.lo <= a.median <= a.hi <= max(x)
    with pytest.raises(ProfileError, match="times must be numbers >= 0 or inf"):
        median_ci([1.0, math.nan])
    with pytest.raises(ProfileError, match=r"confidence must be in \(0, 1\)"):
        median_ci(x, confidence=1.0)


# ---------------------------------------------------------------------------------------- profiles

TIMES = {
    "w1": {"a": 10.0, "b": 20.0, "c": INF},
    "w2": {"a": 30.0, "b": 15.0},  # c has no time: a miss
    "w3": {"a": INF, "b": INF, "c": INF},  # nobody reached the target
}


def test_ratios_by_hand():
    r = time_ratios(TIMES)
    assert r == {
        "w1": {"a": 1.0, "b": 2.0, "c": INF},
        "w2": {"a": 2.0, "b": 1.0, "c": INF},
        "w3": {"a": INF, "b": INF, "c": INF},
    }
    assert list(time_ratios(TIMES, drop_unsolved=True)) == ["w1", "w2"]
    assert time_ratios({"w": {"a": 5.0, "b": 5.0, "c": 7.5}}) == {"w": {"a": 1.0, "b": 1.0, "c": 1.5}}  # ties
    assert time_ratios({"w": {"a": 2.0}}, submissions=["a", "z"]) == {"w": {"a": 1.0, "z": INF}}
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ProfileError, match="times must be > 0 or inf"):
            time_ratios({"w": {"a": bad, "b": 1.0}})
    with pytest.raises(ProfileError, match="has times of q, not among the submissions a"):
        time_ratios({"w": {"q": 1.0}}, submissions=["a"])


def test_ratios_agree_with_the_dolan_more_ratios_of_harness_stats():
    rng = np.random.default_rng(0)
    times = {f"w{i}": {s: float(rng.uniform(1, 100)) if rng.random() > 0.2 else INF for s in "abcd"} for i in range(20)}
    old = stats.performance_ratios(times, dict.fromkeys(times, "min"))
    assert time_ratios(times) == old


def test_integrated_score_by_hand():
    r = time_ratios(TIMES)
    # a: w1 r=1 -> 1, w2 r=2 -> (4-2)/3, w3 -> 0; mean over 3 workloads = 5/9. b the same, c nothing.
    score = integrated_score(r)
    assert score == pytest.approx({"a": 5 / 9, "b": 5 / 9, "c": 0.0})
    assert integrated_score(time_ratios(TIMES, drop_unsolved=True)) == pytest.approx({"a": 5 / 6, "b": 5 / 6, "c": 0.0})
    always = time_ratios({"w1": {"a": 1.0, "b": 3.0}, "w2": {"a": 2.0, "b": 9.0}})
    assert integrated_score(always) == pytest.approx({"a": 1.0, "b": 1 / 3 * 1 / 2})  # b: r = 3 -> 1/3, r = 4.5 -> 0
    assert integrated_score({"w": {"a": 1.0, "b": R_MAX}})["b"] == 0.0  # exactly r_max: no credit
    assert integrated_score({"w": {"a": 1.0, "b": 2.5}})["b"] == pytest.approx(0.5)
    assert integrated_score({"w": {"a": 1.0, "b": 2.5}}, r_max=2.0)["b"] == 0.0


def test_profile_steps_by_hand_and_against_harness_stats():
    ratios = {"w1": {"a": 1.0, "b": 2.0}, "w2": {"a": 3.0, "b": 1.0}, "w3": {"a": 5.0, "b": INF}}
    prof = profile_steps(ratios)
    taus, rho_a = prof["a"]
    assert taus.tolist() == [1.0, 2.0, 3.0, 4.0]  # 5 lies beyond r_max
    assert rho_a.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert prof["b"][1].tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3, 2 / 3])
    old = stats.performance_profile(ratios, taus)
    assert all(np.array_equal(old[s], prof[s][1]) for s in "ab")


def test_integrated_score_is_the_integral_of_the_step_profile():
    rng = np.random.default_rng(1)
    times = {f"w{i}": {s: float(rng.uniform(1, 6)) if rng.random() > 0.15 else INF for s in "abcde"} for i in range(12)}
    ratios = time_ratios(times)
    score = integrated_score(ratios)
    for s, (taus, rho) in profile_steps(ratios).items():
        area = float(np.sum(rho[:-1] * np.diff(taus)))  # a step function: exact
        assert score[s] == pytest.approx(area / (R_MAX - 1.0), abs=1e-12)
        # AlgoPerf's own recipe (trapezoid on 100 linear points over [1, 4], divided by 3) is close:
        # each workload's step moves the area by at most half a grid cell.
        grid = np.linspace(1.0, R_MAX, 100)
        vals = stats.performance_profile(ratios, grid)[s]
        trapezoid = float(np.sum((vals[1:] + vals[:-1]) / 2 * np.diff(grid))) / (R_MAX - 1.0)
        assert abs(trapezoid - score[s]) <= 0.5 * (grid[1] - grid[0]) / (R_MAX - 1.0) + 1e-12


def test_profiles_refuse_bad_ratios():
    with pytest.raises(ProfileError, match="at least one workload"):
        integrated_score({})
    with pytest.raises(ProfileError, match="r_max must be a number > 1"):
        integrated_score({"w": {"a": 1.0}}, r_max=1.0)
    with pytest.raises(ProfileError, match="ratios must be >= 1 or inf"):
        profile_steps({"w": {"a": 0.5}})
