"""harness.stats.intervals against hand-computed values and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from harness.stats import intervals as stats


def test_mean_std_hand_values():
    mean, std = stats.mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert std == pytest.approx(math.sqrt(5.0 / 3.0))  # sum of squares 5, ddof=1
    # non-finite values are left out; one value has no std
    assert stats.mean_std([2.0, math.nan, math.inf]) == (2.0, pytest.approx(math.nan, nan_ok=True))
    assert all(math.isnan(v) for v in stats.mean_std([]))


def test_bootstrap_is_seeded_and_handles_degenerate_input():
    x = [0.91, 0.93, 0.90, 0.95, 0.92]
    assert stats.bootstrap_ci(x) == stats.bootstrap_ci(list(x))
    assert stats.bootstrap_ci(x, seed=1) != stats.bootstrap_ci(x, seed=2)
    lo, hi = stats.bootstrap_ci(x)
    assert min(x) <= lo < np.mean(x) < hi <= max(x)
    assert all(math.isnan(v) for v in stats.bootstrap_ci([0.5]))
    assert stats.bootstrap_ci([0.7, 0.7, 0.7]) == (0.7, 0.7)
    with pytest.raises(ValueError, match="known: expanded, percentile"):
        stats.bootstrap_ci(x, method="bca")


def test_percentile_interval_of_two_points_by_hand():
    # Resampled means of {0, 1}: 0 (p=1/4), 0.5 (p=1/2), 1 (p=1/4); the 2.5% and 97.5% points are 0, 1.
    assert stats.bootstrap_ci([0.0, 1.0], method="percentile") == (0.0, 1.0)


def test_expanded_level_matches_hesterberg_formula_by_hand():
    # n = 10: t_{0.975, 9} = 2.262157, sqrt(10/9) = 1.054093, product 2.384523, 2 * Phi(-2.384523) = 0.017101
    assert stats._expanded_alpha(0.05, 10) == pytest.approx(0.017101, abs=2e-6)
    # large n: the expansion vanishes
    assert stats._expanded_alpha(0.05, 10_000) == pytest.approx(0.05, rel=2e-3)


def test_ci_coverage_on_a_known_distribution():
    """Nominal 95%: over 300 seeded samples of N(1, 2^2) with n = 10 the expanded interval covers
    the true mean about 95% of the time; the plain percentile interval is known to undercover."""
    rng = np.random.default_rng(7)
    reps, n = 300, 10
    hits = {"expanded": 0, "percentile": 0}
    for r in range(reps):
        x = rng.normal(1.0, 2.0, size=n)
        for method in hits:
            lo, hi = stats.bootstrap_ci(x, n_resamples=2000, seed=r, method=method)
            hits[method] += lo <= 1.0 <= hi
    expanded, percentile = hits["expanded"] / reps, hits["percentile"] / reps
    assert 0.91 <= expanded <= 0.985, expanded  # binomial sd ~0.013 at 300 reps
    assert percentile < expanded  # narrowness bias of the plain interval
    assert 0.84 <= percentile <= 0.95, percentile


def test_paired_difference_pairs_by_seed_only():
    a = {0: 1.0, 1: 2.0, 2: 5.0, 3: math.nan}
    b = {4: 9.0, 3: 1.0, 2: 4.0, 1: 1.5}  # insertion order must not matter
    d = stats.paired_difference(a, b)
    assert d.seeds == (1, 2)  # seed 0 only in a, 4 only in b, 3 not finite in a
    assert d.n == 2
    assert d.mean == pytest.approx((0.5 + 1.0) / 2)
    assert (d.lo, d.hi) == (0.5, 1.0)  # two points: the expanded interval is their range
    empty = stats.paired_difference({0: 1.0}, {1: 1.0})
    assert empty.n == 0 and math.isnan(empty.mean)


@pytest.mark.parametrize(
    "lo, hi, direction, n, expected",
    [
        (0.1, 0.3, "max", 3, "win"),
        (-0.3, -0.1, "max", 3, "loss"),
        (-0.3, -0.1, "min", 3, "win"),  # lower is better: a negative difference wins
        (0.1, 0.3, "min", 3, "loss"),
        (-0.1, 0.3, "max", 3, "tie"),
        (0.0, 0.3, "max", 3, "tie"),  # a CI touching 0 does not exclude it
        (math.nan, math.nan, "max", 1, "tie"),
        (math.nan, math.nan, "max", 0, ""),
    ],
)
def test_outcome(lo, hi, direction, n, expected):
    assert stats.outcome(lo, hi, direction, n) == expected


def test_tie_ranks_share_rank_when_cis_overlap():
    means = [0.90, 0.80, 0.85, 0.50]
    los = [0.88, 0.79, 0.83, 0.40]
    his = [0.92, 0.81, 0.89, 0.60]
    # 0.90 leads; 0.85's CI [0.83, 0.89] overlaps [0.88, 0.92] -> rank 1; 0.80 does not -> 3; 0.50 -> 4
    assert list(stats.tie_ranks(means, los, his, "max")) == [1, 3, 1, 4]
    # lower is better: 0.50 leads (1); 0.80 does not overlap it (2); 0.85 does not overlap 0.80 (3);
    # 0.90 overlaps 0.85, the leader of the open group, and shares its rank
    assert list(stats.tie_ranks(means, los, his, "min")) == [3, 2, 3, 1]


def test_tie_ranks_groups_are_contiguous_and_nan_safe():
    # A best and narrow, B next and clearly worse, C wide enough to overlap A but below B:
    # C is compared with B's group (ranks never improve as the mean gets worse).
    means, los, his = [1.0, 0.8, 0.7], [0.99, 0.79, 0.0], [1.01, 0.81, 1.5]
    assert list(stats.tie_ranks(means, los, his, "max")) == [1, 2, 2]
    # no CI (one seed) overlaps everything; a NaN mean (all seeds failed) ranks last
    ranks = stats.tie_ranks(
        [0.5, 0.9, math.nan, 0.1], [math.nan, 0.89, math.nan, 0.0], [math.nan, 0.91, math.nan, 0.2], "max"
    )
    assert list(ranks) == [1, 1, 4, 3]


def test_mean_ranks_average_exact_ties_and_put_nan_last():
    assert list(stats.mean_ranks([1.0, 2.0, 2.0, 3.0], "max")) == [4.0, 2.5, 2.5, 1.0]
    assert list(stats.mean_ranks([1.0, 2.0, 2.0, 3.0], "min")) == [1.0, 2.5, 2.5, 4.0]
    assert list(stats.mean_ranks([0.3, math.nan, 0.9, math.nan], "max")) == [2.0, 3.5, 1.0, 3.5]


def test_performance_ratios_and_profile():
    values = {
        "loss": {"a": 2.0, "b": 4.0, "c": math.nan},  # min, positive: value / best
        "acc": {"a": 0.5, "b": 1.0, "c": 0.25},  # max, positive: best / value
        "r2": {"a": -1.0, "b": 0.5},  # max, not all positive: relative gap
    }
    directions = {"loss": "min", "acc": "max", "r2": "max"}
    r = stats.performance_ratios(values, directions)
    assert r["loss"] == {"a": 1.0, "b": 2.0, "c": math.inf}
    assert r["acc"] == {"a": 2.0, "b": 1.0, "c": 4.0}
    assert r["r2"]["b"] == 1.0 and r["r2"]["a"] == pytest.approx(1.0 + 1.5 / 0.5)
    assert r["r2"]["c"] == math.inf  # missing = never solved
    profile = stats.performance_profile(r, [1.0, 2.0, 4.0, 100.0])
    assert list(profile["a"]) == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert list(profile["b"]) == pytest.approx([2 / 3, 1.0, 1.0, 1.0])
    assert list(profile["c"]) == pytest.approx([0.0, 0.0, 1 / 3, 1 / 3])


@pytest.mark.parametrize("direction", ["max", "min"])
def test_expected_best_after_k_equals_brute_force_over_all_orderings(direction):
    values = [0.3, 0.9, 0.1, 0.9, 0.5, 0.2]  # with a tie
    best = max if direction == "max" else min
    per_k = [[best(p[:k]) for p in itertools.permutations(values)] for k in range(1, len(values) + 1)]
    mean, std = stats.expected_best_after_k(values, direction)
    assert mean == pytest.approx([np.mean(v) for v in per_k])
    assert std == pytest.approx([np.std(v) for v in per_k], abs=1e-12)
    assert mean[0] == pytest.approx(np.mean(values))  # one trial: the average trial
    assert mean[-1] == best(values)  # all trials: the best one
    with pytest.raises(ValueError, match="finite"):
        stats.expected_best_after_k([1.0, math.nan], direction)


# ------------------------------------------------------------------------------ tuning replicates


def _two_level_sample(rng, replicates, seeds, between, within):
    return list(rng.normal(0.0, between, size=(replicates, 1)) + rng.normal(0.0, within, size=(replicates, seeds)))


@pytest.mark.parametrize("replicates", [3, 5])
@pytest.mark.parametrize("between, within", [(1.0, 0.1), (1.0, 1.0), (0.0, 1.0)])
def test_two_level_ci_coverage_by_simulation(replicates, between, within):
    # True mean 0. 300 simulated sweeps per cell (the module docstring quotes 1,000): coverage must
    # not fall below nominal by more than the simulation's noise, and where tuning luck dominates the
    # interval must not be trivially wide either.
    rng = np.random.default_rng(100 * replicates + int(10 * between))
    trials = 300
    covered = 0
    for i in range(trials):
        res = stats.two_level_ci(_two_level_sample(rng, replicates, 3, between, within), n_resamples=1000, seed=i)
        covered += res.lo <= 0.0 <= res.hi
    coverage = covered / trials
    assert coverage >= 0.91, coverage
    if within < between:
        assert coverage <= 0.99, coverage


def test_two_level_ci_counts_tuning_luck_that_seeds_alone_miss():
    # Three replicates that disagree, each with tight seeds: the one-level interval of the pooled
    # seeds is much narrower than the two-level one, which reaches past the replicate range.
    groups = [[1.0, 1.01, 0.99], [2.0, 2.01, 1.99], [3.0, 3.01, 2.99]]
    res = stats.two_level_ci(groups)
    assert res.mean == pytest.approx(2.0) and res.spread == pytest.approx(2.0)
    pooled_lo, pooled_hi = stats.bootstrap_ci([v for g in groups for v in g])
    assert res.hi - res.lo > 3 * (pooled_hi - pooled_lo)
    assert res.lo < 1.0 and res.hi > 3.0
    # Seeded: the same input gives the same interval.
    assert stats.two_level_ci(groups) == res


def test_two_level_ci_degenerate_inputs():
    one = stats.two_level_ci([[1.0, 2.0, 3.0]])
    assert (one.lo, one.hi) == stats.bootstrap_ci([1.0, 2.0, 3.0]) and one.replicate_means == (2.0,)
    assert math.isnan(one.spread)
    empty = stats.two_level_ci([[], [math.nan]])
    assert math.isnan(empty.mean) and empty.replicate_means == ()
    same = stats.two_level_ci([[2.0, 2.0], [2.0, 2.0]])
    assert same.lo == same.hi == same.mean == 2.0
    with pytest.raises(ValueError, match="confidence"):
        stats.two_level_ci([[1.0]], confidence=1.5)


def test_two_level_paired_pairs_replicates_by_index_and_seeds_within():
    a = {(0, 1): 1.0, (0, 2): 2.0, (1, 1): 5.0, (1, 2): 6.0, (2, 9): 7.0}
    b = {(0, 1): 0.5, (0, 2): 1.0, (1, 1): 4.0, (1, 3): 0.0}
    n, diff = stats.two_level_paired(a, b)
    assert n == 3  # (0,1), (0,2), (1,1): replicate 2 and seed 3 have no partner
    assert diff.replicate_means == (0.75, 1.0) and diff.mean == pytest.approx(0.875)


def test_an_optimizer_against_itself_under_two_replicate_seeds_ties_at_the_stated_rate():
    # Same distribution on both sides (one optimizer, two sets of tuning replicates): the paired
    # difference must be called a tie at least at the interval's coverage (0.95 nominal; simulated
    # 300 times here, so allow the noise of that).
    rng = np.random.default_rng(5)
    ties = 0
    trials = 300
    for i in range(trials):
        a = _two_level_sample(rng, 3, 3, 1.0, 0.5)
        b = _two_level_sample(rng, 3, 3, 1.0, 0.5)
        keyed_a = {(r, s): a[r][s] for r in range(3) for s in range(3)}
        keyed_b = {(r, s): b[r][s] for r in range(3) for s in range(3)}
        n, diff = stats.two_level_paired(keyed_a, keyed_b, n_resamples=1000, seed=i)
        ties += stats.outcome(diff.lo, diff.hi, "max", n) == "tie"
    assert ties / trials >= 0.92, ties / trials
