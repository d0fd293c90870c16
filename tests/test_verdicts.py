"""harness.stats.verdicts and .power: margins, the four verdicts, variance components, the MDE and what it would take,
checked by hand values, against scipy's noncentral t and harness.stats.intervals, and by simulated sweeps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.stats import intervals as stats
from harness.stats import power, verdicts
from harness.stats.verdicts import Margin

# ------------------------------------------------------------------------------------- margins


@pytest.mark.parametrize(
    "spec, kind, value",
    [
        (0.01, "absolute", 0.01),
        (2, "absolute", 2.0),
        ("0.5", "absolute", 0.5),
        ("1%", "relative", 0.01),
        (" 2.5 % ", "relative", 0.025),
        ({"absolute": 0.01}, "absolute", 0.01),
        ({"relative": 0.01}, "relative", 0.01),
        ({"relative": "3%"}, "relative", 0.03),
    ],
)
def test_margin_sweep_file_forms(spec, kind, value):
    margin = verdicts.parse_margin(spec)
    assert (margin.kind, margin.value) == (kind, pytest.approx(value))
    assert verdicts.parse_margin(margin) is margin


@pytest.mark.parametrize(
    "spec, message",
    [
        (0, "> 0"),
        (-0.01, "> 0"),
        (math.nan, "> 0"),
        (math.inf, "> 0"),
        ("-1%", "> 0"),
        ("abc", "percentage like '1%'"),
        (True, "must be a number"),
        (None, "valid forms"),
        ([0.01], "valid forms"),
        ({"absolute": 0.01, "relative": 0.01}, "exactly one key"),
        ({"scale": 0.01}, "absolute or relative"),
        ({"absolute": "1%"}, "not a percentage"),
        ({"relative": "x"}, "percentage like"),
    ],
)
def test_margin_bad_forms_say_what_is_valid(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        verdicts.parse_margin(spec)
    with pytest.raises(ValueError, match="kind must be one of absolute, relative"):
        Margin("percent", 0.01)


def test_margin_resolves_against_the_reference_mean():
    assert Margin("absolute", 0.005).resolve(0.9) == 0.005
    assert Margin("relative", 0.01).resolve(2.5) == pytest.approx(0.025)
    assert Margin("relative", 0.01).resolve(-2.0) == pytest.approx(0.02)  # |mean|: a log-likelihood
    assert math.isnan(Margin("relative", 0.01).resolve(math.nan))
    assert Margin("relative", 0.01).resolve(0.0) == 0.0
    assert (str(Margin("relative", 0.01)), str(Margin("absolute", 0.005))) == ("1%", "0.005")


def test_every_builtin_task_metric_has_a_deliberate_default_and_range():
    import tasks

    names = {m.name for spec in tasks.REGISTRY.values() for m in spec.metrics}
    assert {"accuracy", "val_loss", "perplexity", "rmse", "r2"} <= names
    assert names <= set(verdicts.METRIC_BOUNDS), names - set(verdicts.METRIC_BOUNDS)
    for name in names:
        margin = verdicts.default_margin(name)
        lo, hi = verdicts.metric_bounds(name)
        if hi == 1.0:  # scores on [0, 1] and R2: half a percentage point
            assert margin == Margin("absolute", 0.005), name
        elif name in verdicts.NAT_LOSSES:
            assert margin == Margin("absolute", 0.01)
        else:
            assert margin == Margin("relative", 0.01), name
    assert verdicts.default_margin("my_score") == Margin("relative", 0.01)  # unknown units: scale-free
    assert verdicts.metric_bounds("my_score") == (-math.inf, math.inf)


# -------------------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    "lo, hi, margin, direction, expected",
    [
        (0.001, 0.004, 0.005, "max", "equivalent"),  # excludes 0 but inside the margin: negligible
        (-0.004, 0.004, 0.005, "max", "equivalent"),
        (-0.004, -0.001, 0.005, "min", "equivalent"),
        (-0.005, 0.004, 0.005, "max", "inconclusive"),  # touching -margin is not inside
        (0.001, 0.005, 0.005, "max", "better"),  # touching +margin: not equivalent, excludes 0
        (0.001, 0.02, 0.005, "max", "better"),
        (0.001, 0.02, 0.005, "min", "worse"),  # lower is better: a positive A - B is worse
        (-0.02, -0.001, 0.005, "min", "better"),
        (-0.02, -0.001, 0.005, "max", "worse"),
        (0.02, 0.001, 0.005, "max", "better"),  # bounds in either order
        (-0.01, 0.02, 0.005, "max", "inconclusive"),
        (0.0, 0.02, 0.005, "max", "inconclusive"),  # touching 0 does not exclude it
        (math.nan, math.nan, 0.005, "max", "inconclusive"),  # one shared seed: no interval
        (0.1, math.inf, 0.005, "max", "inconclusive"),
        (0.001, 0.002, math.nan, "max", "better"),  # no margin: never equivalent
        (-0.001, 0.001, math.nan, "max", "inconclusive"),
        (0.0, 0.0, 0.005, "max", "equivalent"),  # identical runs
        (0.0, 0.0, 0.0, "max", "inconclusive"),
    ],
)
def test_verdict_cases(lo, hi, margin, direction, expected):
    assert verdicts.verdict(lo, hi, margin, direction) == expected
    assert expected in verdicts.VERDICTS


def test_verdict_refuses_bad_input_and_agrees_with_outcome_without_a_margin():
    with pytest.raises(ValueError, match=">= 0"):
        verdicts.verdict(0.1, 0.2, -0.01, "max")
    with pytest.raises(ValueError, match="'max' or 'min'"):
        verdicts.verdict(0.1, 0.2, 0.01, "up")
    rng = np.random.default_rng(3)
    same = {"win": "better", "loss": "worse", "tie": "inconclusive"}
    for lo, hi in rng.normal(size=(200, 2)):
        for direction in ("max", "min"):
            assert verdicts.verdict(lo, hi, math.nan, direction) == same[stats.outcome(lo, hi, direction, 3)]
    assert verdicts.excludes_zero(0.001, 0.004) and verdicts.excludes_zero(-0.2, -0.1)
    assert not verdicts.excludes_zero(0.0, 0.1) and not verdicts.excludes_zero(math.nan, 1.0)


# ------------------------------------------------------------------------- variance components


def test_variance_components_by_hand_and_with_missing_values():
    c = verdicts.variance_components([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    # replicate means 2 and 5: var 4.5; pooled within (2 + 2) / 4 = 1; between 4.5 - 1/3
    assert (c.replicates, c.seeds, c.df_within) == (2, 3.0, 4)
    assert c.within == pytest.approx(1.0) and c.between == pytest.approx(4.5 - 1.0 / 3.0)
    truncated = verdicts.variance_components([[0.0, 2.0], [1.0, 1.0]])  # equal means: between 0
    assert truncated.between == 0.0 and truncated.within == pytest.approx(1.0)
    grid = np.array([[1.0, 2.0, math.nan], [4.0, 5.0, 6.0], [math.nan] * 3])
    ragged = verdicts.variance_components(grid)
    assert ragged == verdicts.variance_components([[1.0, 2.0], [4.0, 5.0, 6.0], []])
    assert ragged.replicates == 2 and ragged.seeds == pytest.approx(2.4)  # harmonic mean of 2 and 3
    one = verdicts.variance_components([[1.0, 2.0, 4.0]])
    assert math.isnan(one.between) and one.within == pytest.approx(7.0 / 3.0)  # unidentifiable


@pytest.mark.parametrize("sizes", [(3, 3, 3), (5, 2), (2, 5, 3), (1, 3, 3, 4), (4, 1, 0, 2), (1, 1, 1)])
def test_analytic_two_level_interval_is_what_the_bootstrap_converges_to(sizes):
    rng = np.random.default_rng(sum(sizes))
    for between in (0.0, 0.5, 3.0):
        groups = [rng.normal(between * rng.normal(), 1.0, size=k) for k in sizes]
        two = stats.two_level_ci(groups)
        mean, lo, hi = verdicts.two_level_interval(verdicts._grid(groups))
        assert float(mean) == pytest.approx(two.mean, abs=1e-12)
        assert (two.hi - two.lo) == pytest.approx(float(hi - lo), rel=0.04)  # 10,000 resamples: ~1% noise


def test_analytic_interval_with_one_replicate_is_the_t_interval():
    from scipy.special import stdtrit

    x = np.array([0.2, 0.5, -0.1, 0.4])
    mean, lo, hi = verdicts.two_level_interval(x[None, :])
    half = stdtrit(3, 0.975) * x.std(ddof=1) / 2.0
    assert (float(lo), float(hi)) == pytest.approx((x.mean() - half, x.mean() + half))
    _, lo1, _ = verdicts.two_level_interval(np.array([[0.3]]))
    assert math.isnan(float(lo1))


def test_paired_groups_pair_like_two_level_paired():
    a = {(0, 1): 1.0, (0, 2): 2.0, (1, 1): 5.0, (1, 2): 6.0, (2, 9): 7.0, (1, 3): math.nan}
    b = {(0, 1): 0.5, (0, 2): 1.0, (1, 1): 4.0, (1, 3): 0.0}
    groups = verdicts.paired_groups(a, b)
    _, two = stats.two_level_paired(a, b)
    assert [g.tolist() for g in groups] == [[0.5, 1.0], [1.0]]
    assert tuple(float(g.mean()) for g in groups) == two.replicate_means


# --------------------------------------------------------------------------------------- the MDE


@pytest.mark.parametrize("replicates", [2, 3, 5, 10])
def test_mde_without_seed_noise_is_the_noncentral_t_power(replicates):
    from scipy.special import nctdtrinc, stdtrit

    df = replicates - 1
    expected = nctdtrinc(df, 0.2, stdtrit(df, 0.975)) * 0.3 / math.sqrt(replicates)
    assert power.mde(0.09, 0.0, replicates, 4) == pytest.approx(expected, rel=2e-3)
    # one replicate: seeds only, t with n - 1 degrees of freedom, the between variance ignored
    n = replicates + 1
    seeds_only = nctdtrinc(n - 1, 0.2, stdtrit(n - 1, 0.975)) * 0.5 / math.sqrt(n)
    assert power.mde(math.nan, 0.25, 1, n) == pytest.approx(seeds_only, rel=2e-3)


def test_mde_degenerate_and_monotone():
    assert math.isnan(power.mde(math.nan, 1.0, 1, 1))  # one replicate, one seed
    assert math.isnan(power.mde(math.nan, 1.0, 3, 3))  # unknown between with R > 1
    assert power.mde(0.0, 0.0, 3, 3) == 0.0
    with pytest.raises(ValueError, match="replicates >= 1"):
        power.mde(1.0, 1.0, 0, 3)
    by_r = [power.mde(1.0, 1.0, r, 3) for r in range(2, 30)]
    by_n = [power.mde(1.0, 1.0, 3, n) for n in range(1, 30)]
    assert np.all(np.diff(by_r) < 0) and np.all(np.diff(by_n) < 0)
    # seeds cannot remove tuning luck: unlimited seeds leave the between-only MDE
    assert power.mde(1.0, 1.0, 3, 10**6) == pytest.approx(power.mde(1.0, 0.0, 3, 3), rel=2e-3)
    assert power.mde(4.0, 1.0, 3, 3) > power.mde(1.0, 1.0, 3, 3)


def test_replicates_needed_is_the_smallest_design_under_the_margin():
    between, within, n, margin = 0.002**2, 0.007**2, 3, 0.005
    need = power.replicates_needed(margin, between, within, n, replicates=3)
    r = need.replicates
    assert power.mde(between, within, r, n) < margin <= power.mde(between, within, r - 1, n)
    r_inf = need.replicates_unlimited_seeds
    assert r_inf <= r and power.mde(between, 0.0, r_inf, n) < margin
    assert need.seeds is None and "no seed count" in need.reason  # at R = 3 tuning luck is too much
    at_five = power.replicates_needed(margin, between, within, n, replicates=5)
    s = at_five.seeds
    assert power.mde(between, within, 5, s) < margin <= power.mde(between, within, 5, s - 1)
    hopeless = power.replicates_needed(0.001, 0.01**2, 0.01**2, 3, replicates=3, cap=20)
    assert hopeless.replicates is None and "even 20 replicates" in hopeless.reason
    assert "tuning luck alone" in hopeless.reason
    one = power.replicates_needed(margin, math.nan, within, n, replicates=1)
    assert one.replicates is None and "unidentifiable" in one.reason
    assert "no margin" in power.replicates_needed(math.nan, between, within, n).reason


def test_assess_end_to_end_from_keyed_runs():
    rng = np.random.default_rng(11)
    a = {(r, s): 0.90 + 0.004 * r + rng.normal(0, 0.003) for r in range(3) for s in range(4)}
    b = {(r, s): 0.90 + rng.normal(0, 0.003) for r in range(3) for s in range(4)}
    groups = verdicts.paired_groups(a, b)
    _, two = stats.two_level_paired(a, b)
    result = verdicts.assess(groups, two.lo, two.hi, 0.005, "max")
    c = verdicts.variance_components(groups)
    assert result.verdict == verdicts.verdict(two.lo, two.hi, 0.005, "max")
    assert (result.lo, result.hi, result.margin) == (two.lo, two.hi, 0.005)
    assert result.mde == pytest.approx(power.mde(c.between, c.within, 3, 4))
    assert result.tuning_luck and result.replicates == 3 and result.seeds == 4.0
    assert result.need == power.replicates_needed(0.005, c.between, c.within, 4, replicates=3)
    seeds_only = verdicts.assess([groups[0]], -0.01, 0.01, 0.005, "max")
    assert not seeds_only.tuning_luck and math.isfinite(seeds_only.mde)
    assert seeds_only.verdict == "inconclusive" and "unidentifiable" in seeds_only.need.reason
    nothing = verdicts.assess([], math.nan, math.nan, 0.005, "max")
    assert nothing.verdict == "inconclusive" and nothing.need.reason == "no paired runs"


# ------------------------------------------------------------------------------------- display


def test_clip_interval_keeps_mean_intervals_in_range():
    bounds = verdicts.metric_bounds("accuracy")
    assert verdicts.clip_interval(0.895, 1.002, bounds) == (0.895, 1.0)
    assert verdicts.clip_interval(-0.01, 0.5, bounds) == (0.0, 0.5)
    assert verdicts.clip_interval(0.2, 0.3, bounds) == (0.2, 0.3)
    lo, hi = verdicts.clip_interval(math.nan, math.nan, bounds)
    assert math.isnan(lo) and math.isnan(hi)
    assert verdicts.clip_interval(0.99, 1.3, verdicts.metric_bounds("perplexity")) == (1.0, 1.3)


@pytest.mark.parametrize(
    "x, margin, decimals, text",
    [
        (-0.0003, 0.005, 3, "-0.0003"),
        (0.0049, 0.005, 3, "0.0049"),
        (-0.00499999, 0.005, 3, "-0.00499999"),
        (0.00500001, 0.005, 3, "0.00500001"),
        (0.005, 0.005, 3, "0.005"),
        (0.123456, 0.005, 3, "0.123"),
        (-0.0, 0.005, 3, "0.000"),
        (-2e-17, 0.036, 3, "0.000"),  # summation noise of identical paired runs
        (1e-8, 0.005, 3, "0.00000001"),  # small but above noise: its sign shows
        (12.3456, math.nan, 1, "12.3"),
        (math.nan, 0.005, 3, "n/a"),
    ],
)
def test_format_bound_shows_the_side_of_zero_and_margin(x, margin, decimals, text):
    assert verdicts.format_bound(x, margin, decimals) == text


def test_format_bound_never_crosses_zero_or_margin():
    rng = np.random.default_rng(8)
    margins = 10.0 ** rng.uniform(-4, 0, 500)
    xs = margins * rng.choice([-1, 1], 500) * (1 + rng.choice([0.0, 1e-3, -1e-3, 1e-7], 500))
    for x, m in zip(np.concatenate([xs, rng.normal(0, 1e-4, 500)]), np.concatenate([margins, margins])):
        shown = float(verdicts.format_bound(x, m, 2))
        for ref in (0.0, m, -m):
            assert np.sign(shown - ref) == np.sign(x - ref), (x, m, shown)


# ------------------------------------------------------------------------ simulated sweeps


def _sweeps(rng, sims, replicates, seeds, between_sd, within_sd, effect):
    """Paired differences of ``sims`` sweeps, normal two-level: (sims, R, n)."""
    return (
        np.asarray(effect, dtype=float).reshape(-1, 1, 1)
        + rng.normal(0.0, between_sd, (sims, replicates, 1))
        + rng.normal(0.0, within_sd, (sims, replicates, seeds))
    )


def verdict_rates(x, margin, direction="max"):
    """Share of each verdict over the sweeps ``x``, and of intervals excluding 0 on the better side,
    with the leaderboard's interval in closed form (``two_level_interval``)."""
    _, lo, hi = verdicts.two_level_interval(x)
    called = [verdicts.verdict(a, b, margin, direction) for a, b in zip(lo, hi)]
    rates = {v: called.count(v) / len(called) for v in verdicts.VERDICTS}
    rates["excludes_zero"] = float(np.mean(lo > 0 if direction == "max" else hi < 0))
    return rates


# (between sd, within sd, R, n) of the paired differences: tuning luck dominant, equal, seeds dominant
POWER_SETTINGS = [
    (1.0, 1.0, 3, 3),
    (1.0, 0.1, 3, 3),
    (0.3, 1.0, 3, 5),
    (0.0, 1.0, 3, 3),
    (1.0, 1.0, 5, 5),
    (1.0, 1.0, 10, 3),
    (0.5, 1.0, 5, 2),
    (1.0, 1.0, 2, 3),
]


@pytest.mark.parametrize("setting", POWER_SETTINGS)
def test_better_rate_at_the_reported_mde(setting):
    # Issue 20: at a true effect equal to the MDE the verdict is "better" in 70-90% of sweeps. The
    # margin is half the MDE here (a design that cannot yet resolve the margin, today's case); for
    # "min" metrics the better effect is negative.
    between, within, r, n = setting
    direction = "max" if r != 5 else "min"
    rng = np.random.default_rng(int(100 * between + 10 * within + r + n))
    effect = power.mde(between**2, within**2, r, n)
    rates = verdict_rates(
        _sweeps(rng, 4000, r, n, between, within, effect * (1.0 if direction == "max" else -1.0)), effect / 2, direction
    )
    assert 0.70 <= rates["better"] <= 0.90, rates
    assert rates["excludes_zero"] == pytest.approx(0.80, abs=0.03), rates  # calibrated: sd 0.006


def test_an_effect_below_the_margin_is_equivalent_not_better():
    # MDE under the margin: an interval at the MDE that excludes 0 usually lies inside +-margin,
    # which is "equivalent" (excludes_zero says the rest); "better" stays for effects that matter.
    rng = np.random.default_rng(21)
    effect = power.mde(1.0, 1.0, 5, 5)
    rates = verdict_rates(_sweeps(rng, 4000, 5, 5, 1.0, 1.0, effect), 2.5 * effect)
    assert rates["excludes_zero"] == pytest.approx(0.80, abs=0.03)
    assert rates["better"] < 0.10 and rates["equivalent"] > 0.75, rates
    at_margin = verdict_rates(_sweeps(rng, 4000, 5, 5, 1.0, 1.0, 2.5 * effect), 2.5 * effect)
    assert at_margin["better"] > 0.95, at_margin  # an effect of the margin's size is found


def _keyed_sweep(rng, replicates, seeds, between, within, effect):
    """One sweep of two optimizers keyed (replicate, seed): each side its own tuning luck and seed
    noise (variances half of the difference's), plus a seed effect both share (it cancels)."""
    shared = rng.normal(0.0, 1.0, seeds)

    def side(mean: float) -> dict:
        values = (
            mean
            + rng.normal(0.0, between / math.sqrt(2), (replicates, 1))
            + rng.normal(0.0, within / math.sqrt(2), (replicates, seeds))
            + shared
        )
        return {(r, s): float(values[r, s]) for r in range(replicates) for s in range(seeds)}

    return side(effect), side(0.0)


def leaderboard_better_rate(setting, sims, n_resamples, seed):
    """Share of "better" at the MDE through the leaderboard's own two-level bootstrap."""
    between, within, r, n = setting
    rng = np.random.default_rng(seed)
    effect = power.mde(between**2, within**2, r, n)
    better = 0
    for i in range(sims):
        a, b = _keyed_sweep(rng, r, n, between, within, effect)
        count, diff = stats.two_level_paired(a, b, n_resamples=n_resamples, seed=i)
        better += verdicts.verdict(diff.lo, diff.hi, effect / 2, "max") == "better"
    return better / sims


@pytest.mark.parametrize("setting", [(1.0, 1.0, 3, 3), (0.3, 1.0, 5, 3)])
def test_better_rate_at_the_mde_through_the_bootstrap(setting):
    rate = leaderboard_better_rate(setting, 200, 2000, 5)  # binomial sd 0.03 at 200 sweeps
    assert 0.70 <= rate <= 0.90, rate


@pytest.mark.slow
@pytest.mark.parametrize("setting", POWER_SETTINGS[:6])
def test_better_rate_at_the_mde_through_the_bootstrap_heavy(setting):
    rate = leaderboard_better_rate(setting, 1000, stats.N_RESAMPLES, 6)
    assert 0.75 <= rate <= 0.85, rate


def test_one_replicate_mde_against_the_seed_bootstrap():
    # R = 1: the MDE uses the t interval the expanded bootstrap approximates (10 seeds here; with
    # 3-5 seeds the bootstrap interval is too narrow and the rate is higher, see the report).
    rng = np.random.default_rng(4)
    effect = power.mde(math.nan, 1.0, 1, 10)
    better = 0
    for i in range(300):
        d = stats.paired_difference(
            dict(enumerate(rng.normal(effect, 1.0, 10))), dict.fromkeys(range(10), 0.0), n_resamples=2000, seed=i
        )
        better += verdicts.verdict(d.lo, d.hi, effect / 2, "max") == "better"
    assert 0.70 <= better / 300 <= 0.90


# Realistic differences (sd of tuning luck, sd of seeds, default margin, R, n), from the demo
# leaderboard's spreads: digits accuracy, CIFAR-like accuracy, a small LLM's validation loss.
REALISTIC = {
    "accuracy R3 n3": (0.002, 0.007, 0.005, 3, 3),
    "accuracy R10 n5": (0.002, 0.007, 0.005, 10, 5),
    "cifar accuracy R5 n5": (0.003, 0.002, 0.005, 5, 5),
    "val_loss R10 n5": (0.01, 0.003, 0.01, 10, 5),
}


@pytest.mark.parametrize("name", REALISTIC)
def test_zero_and_margin_effects_at_the_default_margin(name):
    between, within, margin, r, n = REALISTIC[name]
    rng = np.random.default_rng(40 + list(REALISTIC).index(name))
    zero = verdict_rates(_sweeps(rng, 4000, r, n, between, within, 0.0), margin)
    assert zero["better"] + zero["worse"] <= 0.06, zero  # two-sided 5% test
    predicted = power.equivalence_probability(margin, between**2, within**2, r, n)
    assert zero["equivalent"] == pytest.approx(predicted, abs=0.03), (zero, predicted)
    edge = verdict_rates(_sweeps(rng, 4000, r, n, between, within, margin), margin)
    assert edge["equivalent"] <= 0.035, edge  # TOST at 2.5% per side
    assert power.equivalence_probability(margin, between**2, within**2, r, n, effect=margin) <= 0.026


def test_default_margins_resolve_for_the_realistic_settings():
    assert verdicts.default_margin("accuracy").resolve(0.96) == REALISTIC["accuracy R3 n3"][2]
    assert verdicts.default_margin("val_loss").resolve(2.48) == REALISTIC["val_loss R10 n5"][2]


@pytest.mark.parametrize("replicates", [3, 5])
def test_mde_from_one_sweeps_estimates_is_optimistic_at_few_replicates(replicates):
    # The reported MDE plugs in one sweep's estimated components (R - 1 degrees of freedom for
    # tuning luck). Over many such sweeps the power at the reported MDE averages less than 80%:
    # predicted E_w[P(noncentral t_k(lam sqrt(w)) > t)], w ~ chi2_k / k, checked by simulation.
    from scipy.special import chdtri, nctdtr, stdtrit

    k = replicates - 1
    t = stdtrit(k, 0.975)
    lam = power.mde(1.0, 0.0, replicates, 1) * math.sqrt(replicates)
    w = chdtri(k, 1.0 - (np.arange(2000) + 0.5) / 2000) / k
    predicted = float(np.mean(1.0 - nctdtr(k, lam * np.sqrt(w), t)))
    rng = np.random.default_rng(replicates)
    pilots = _sweeps(rng, 4000, replicates, 1, 1.0, 0.0, 0.0)
    reported = [
        power.mde(c.between, c.within, replicates, 1, df_within=0) for c in map(verdicts.variance_components, pilots)
    ]
    rates = verdict_rates(_sweeps(rng, 4000, replicates, 1, 1.0, 0.0, np.array(reported)), math.nan)
    assert rates["better"] == pytest.approx(predicted, abs=0.03), (rates, predicted)
    assert rates["better"] < 0.75
