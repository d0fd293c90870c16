"""SoftSignum: the temperature schedule against scipy's folded Cauchy, the phase logic, the update
after the switch, and the foreach fast path against the per-tensor reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from optimizers import REGISTRY
from optimizers.sgd import SGD
from optimizers.signum import Signum
from optimizers.softsignum import (
    SoftSignum,
    fit_cauchy,
    folded_cauchy_quantile,
    soft_step,
    temperature_schedule,
)

C = math.atanh(1 - 1e-4)


# --- the schedule ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mu", [-3.0, -0.5, 0.0, 0.7, 4.0])
def test_scipy_foldcauchy_parametrisation(mu):
    """foldcauchy(c=|mu|/sigma, scale=sigma) is the law of |X|, X ~ Cauchy(mu, sigma), for either sign of mu."""
    sigma = 0.3
    q = np.linspace(0.0, 20.0, 41)
    direct = stats.cauchy.cdf(q, loc=mu, scale=sigma) - stats.cauchy.cdf(-q, loc=mu, scale=sigma)
    np.testing.assert_allclose(stats.foldcauchy.cdf(q, c=abs(mu) / sigma, scale=sigma), direct, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("mu", "sigma"), [(0.0, 1e-3), (2e-4, 1e-3), (-2e-4, 1e-3), (-5e-3, 1e-3), (3e-2, 1e-3), (0.4, 2.0), (-1.0, 0.05)]
)
def test_schedule_matches_folded_cauchy_quantile(mu, sigma):
    rng = np.random.default_rng(0)
    values = (mu + sigma * rng.standard_cauchy(4001)).astype(np.float32)  # odd count: unique median
    n = 200  # scipy's foldcauchy.ppf root-finds per entry: keep it small
    tau = temperature_schedule(torch.from_numpy(values), n).numpy()
    # Reference fit computed independently (numpy), then scipy's quantile function.
    v = values.astype(np.float64)
    mu_hat = np.median(v)
    sigma_hat = np.median(np.abs(v - mu_hat))
    p = np.arange(n) / n
    q_ref = stats.foldcauchy.ppf(p, c=abs(mu_hat) / sigma_hat, scale=sigma_hat)
    free = (tau > 1.0) & (tau < 1e9)
    assert free.sum() >= n // 2, "the case must exercise the unclipped range"
    np.testing.assert_allclose(C / tau[free], q_ref[free], rtol=1e-6)
    # The clipped entries are exactly the ones whose unclipped value lies outside [1, tmax].
    with np.errstate(divide="ignore"):
        raw = C / q_ref
    assert np.all((raw[~free] <= 1.0 + 1e-9) | (raw[~free] >= 1e9 * (1 - 1e-9)))
    assert tau[0] == 1e9  # p_0 = 0: q_0 = 0, the transition starts as a pure sign


def test_quantile_newton_matches_scipy_for_far_off_center_mu():
    """Bimodal folded laws (|mu| >> sigma) are the hard case for Newton from q0 = sigma*tan(pi p/2) + |mu|."""
    p = torch.arange(1, 200, dtype=torch.float64) / 200
    for mu in (-100.0, 25.0):
        q = folded_cauchy_quantile(p, torch.tensor(mu), torch.tensor(1.0), newton_iters=10)
        ref = stats.foldcauchy.ppf(p.numpy(), c=abs(mu), scale=1.0)
        np.testing.assert_allclose(q.numpy(), ref, rtol=1e-6)


def test_schedule_clipped_and_nonincreasing():
    g = torch.Generator().manual_seed(1)
    values = 0.05 * torch.randn(20001, generator=g)  # sigma ~ 0.034: c/q hits both clips
    tau = temperature_schedule(values, 1000, tmax=50.0)
    assert tau.shape == (1000,)
    assert torch.isfinite(tau).all()
    assert tau.max() == 50.0 and tau.min() == 1.0
    assert (tau[0] == 50.0) and (tau[-1] == 1.0)
    assert (tau[1:] <= tau[:-1]).all()
    assert ((tau > 1.0) & (tau < 50.0)).any()


@pytest.mark.parametrize("case", ["mostly_zero", "all_zero", "all_equal"])
def test_zero_mad_gives_finite_schedule(case):
    v = torch.zeros(1001)
    if case == "mostly_zero":
        v[:100] = torch.linspace(-1, 1, 100)  # MAD = 0 (more than half the entries are 0)
    elif case == "all_equal":
        v += 0.25
    mu, sigma = fit_cauchy(v)
    assert sigma > 0 and torch.isfinite(sigma)
    tau = temperature_schedule(v, 200, tmax=1e9)
    assert torch.isfinite(tau).all() and (tau >= 1).all() and (tau <= 1e9).all()
    assert (tau[1:] <= tau[:-1]).all()
    if case == "all_equal":  # degenerate law at |mu| = 0.25: tau ~ c / 0.25 for every j > 0
        assert torch.allclose(tau[1:100], torch.full((99,), C / 0.25, dtype=tau.dtype), rtol=1e-4)


@pytest.mark.parametrize("case", ["odd", "even", "zero_mad", "all_equal"])
def test_cpu_and_device_fits_agree(case):
    """The CPU fit (numpy selection) and the GPU fit (torch.median, no host sync) give the same numbers."""
    from optimizers.softsignum import _fit_cauchy_torch

    g = torch.Generator().manual_seed(3)
    v = {
        "odd": torch.randn(1001, generator=g),
        "even": torch.randn(1000, generator=g) + 0.3,
        "zero_mad": torch.cat([torch.zeros(600), torch.randn(400, generator=g)]),
        "all_equal": torch.full((50,), -2.0),
    }[case]
    original = v.clone()
    mu, sigma = fit_cauchy(v)
    assert torch.equal(v, original), "fit_cauchy must not touch its input unless overwrite=True"
    mu_t, sigma_t = _fit_cauchy_torch(v)
    assert mu == mu_t == v.median()
    torch.testing.assert_close(sigma, sigma_t, rtol=1e-12, atol=0)  # a mean may sum in another order
    assert sigma > 0
    if case == "zero_mad":
        torch.testing.assert_close(sigma, (v - v.median()).abs().mean(dtype=torch.float64), rtol=1e-12, atol=0)


def test_while_compiling_the_fit_is_torch_only_and_gives_the_same_schedule(monkeypatch):
    """torch.compile cannot trace numpy: while a step is being compiled the CPU fit takes the torch
    path (issue 18), and the schedule is the one the eager numpy path builds."""
    g = torch.Generator().manual_seed(5)
    v = torch.randn(4001, generator=g) * 0.3 + 0.05
    eager = temperature_schedule(v.clone(), 50)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)

    def no_numpy(*args, **kwargs):
        raise AssertionError("the fit handed a tensor to numpy while compiling")

    monkeypatch.setattr(torch.Tensor, "numpy", no_numpy)
    compiled_path = temperature_schedule(v.clone(), 50)
    torch.testing.assert_close(compiled_path, eager, rtol=1e-12, atol=0)


def test_schedule_never_calls_quantile(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("torch.quantile sorts everything and fails above 2^24 entries")

    monkeypatch.setattr(torch, "quantile", forbidden)
    monkeypatch.setattr(torch.Tensor, "quantile", forbidden)
    assert temperature_schedule(torch.randn(5000), 10).shape == (10,)


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n"):
        temperature_schedule(torch.randn(10), 0)
    with pytest.raises(ValueError, match="eps"):
        temperature_schedule(torch.randn(10), 5, eps=1.5)
    with pytest.raises(ValueError, match="tmax"):
        temperature_schedule(torch.randn(10), 5, tmax=0.5)


# --- the optimizer --------------------------------------------------------------------------------


def _params(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 5), (5,), (3, 2, 2), (4,)]
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in shapes]


def _grads(params, step, seed=0):
    """Deterministic synthetic gradients (independent of the parameters: no chaotic feedback)."""
    g = torch.Generator().manual_seed(1000 * seed + step)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) * (0.1 + 0.05 * i) for i, p in enumerate(params)]


def _run(opt, params, steps, start=0, seed=0):
    for t in range(start, start + steps):
        for p, g in zip(params, _grads(params, t, seed)):
            p.grad = g
        opt.step()


def _groups(params):
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("foreach", [False, True])
def test_alpha_sign_one_is_signum_bit_for_bit(nesterov, foreach):
    a, b = _params(), _params()
    hp = {"lr": 1e-2, "momentum": 0.9, "nesterov": nesterov}
    soft = SoftSignum(_groups(a), total_steps=12, alpha_sign=1.0, foreach=foreach, **hp)
    sign = Signum(_groups(b), foreach=foreach, **hp)
    _run(soft, a, 15)  # also past K: stays Signum
    _run(sign, b, 15)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert soft.diagnostics()["phase"] == 0.0


@pytest.mark.parametrize("scope", ["optimizer", "group"])
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("nesterov", [False, True])
def test_update_after_switch_is_lr_tanh_tau_d(foreach, nesterov, scope):
    """Float64 hand computation of steps S+1 and S+2: m, d, the schedule (one over both weight-decay
    groups by default; one per group with schedule_scope="group"), p*(1-lr wd) - lr tanh(tau d)."""
    params = _params(torch.float64)
    lr, beta, K, S = 0.05, 0.8, 10, 6  # weight decay 0.1 on the matrices (_groups)
    opt = SoftSignum(
        _groups(params),
        total_steps=K,
        lr=lr,
        momentum=beta,
        nesterov=nesterov,
        alpha_sign=0.65,
        schedule_scope=scope,
        foreach=foreach,
    )  # floor(0.65 * 10) = 6
    # The heavy-ball buffers replayed from the gradient sequence (independent of how the optimizer
    # stores its momentum).
    bufs = [torch.zeros_like(p) for p in params]
    for t in range(S):
        for g, m in zip(_grads(params, t), bufs):
            m.mul_(beta).add_(g)
    _run(opt, params, S)
    assert opt.diagnostics()["phase"] == 0.0
    schedules = {}
    for step in (S, S + 1):
        grads = _grads(params, step)
        expected = []
        ds = []
        for g, m in zip(grads, bufs):
            m.mul_(beta).add_(g)
            ds.append(g + beta * m if nesterov else m.clone())
        for gi, group in enumerate(_groups(params)):
            idx = [i for i, p in enumerate(params) if any(p is q for q in group["params"])]
            if step == S:  # the switch: schedule from all entries of d (of this group, scope "group")
                pooled = idx if scope == "group" else range(len(params))
                flat = torch.cat([ds[i].reshape(-1) for i in pooled])
                schedules[gi] = temperature_schedule(flat, K - S)
            expected.append((gi, idx, [(1 - lr * group["weight_decay"]) * params[i].detach() for i in idx]))
        _run(opt, params, 1, start=step)
        for gi, idx, decayed in expected:
            stored = opt.param_groups[gi]["tau_schedule"]  # float32, as the optimizer applies it
            torch.testing.assert_close(stored.double(), schedules[gi], rtol=1e-6, atol=0)
            tau = stored[step - S].double()
            for i, p_decayed in zip(idx, decayed):
                want = p_decayed - lr * torch.tanh(tau * ds[i])
                torch.testing.assert_close(params[i].detach(), want, rtol=0, atol=1e-13)
    assert schedules[0][0] == 1e9
    assert torch.equal(schedules[0], schedules[1]) == (scope == "optimizer")
    diag = opt.diagnostics()
    assert diag["phase"] == 1.0 and diag["tau"] == pytest.approx(float(schedules[0][1]), rel=1e-6)


def test_past_total_steps_holds_last_tau():
    params = _params()
    opt = SoftSignum(_groups(params), total_steps=8, alpha_sign=0.5, lr=1e-2)
    taus = []
    for t in range(14):
        _run(opt, params, 1, start=t)
        taus.append(opt.diagnostics()["tau"])
    schedule = opt.param_groups[0]["tau_schedule"]
    assert schedule.shape == (4,)
    assert taus[:4] == [math.inf] * 4
    assert taus[4:8] == pytest.approx(schedule.tolist())
    assert taus[8:] == [pytest.approx(float(schedule[-1]))] * 6
    assert opt.param_groups[0]["step"] == 14
    assert all(torch.isfinite(p).all() for p in params)


def test_diagnostics_saturated_fraction():
    params = _params()
    opt = SoftSignum(_groups(params), total_steps=20, alpha_sign=0.5, lr=1e-2)
    _run(opt, params, 12)
    diag = opt.diagnostics()
    hits = total = 0
    for group in opt.param_groups:
        tau = group["tau_schedule"][group["step"] - group["sign_steps"] - 1]
        for p in group["params"]:
            d = opt.state[p]["exp_avg"] / (1 - 0.9)  # the heavy-ball momentum m (no Nesterov here)
            y = torch.tanh(tau * d).abs()
            hits += int((y > 1 - 1e-4).sum())
            total += p.numel()
    assert diag["saturated_frac"] == pytest.approx(hits / total)
    assert 0.0 < diag["saturated_frac"] < 1.0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("lr", -1e-3),
        ("momentum", 1.0),
        ("momentum", -0.1),
        ("alpha_sign", 1.5),
        ("alpha_sign", -0.1),
        ("weight_decay", -1.0),
        ("eps", 0.0),
        ("eps", 1.0),
        ("tmax", 0.5),
        ("newton_iters", 0),
        ("nesterov", "yes"),
        ("schedule_scope", "layer"),
        ("schedule_scope", None),
    ],
)
def test_bad_hyperparameters_raise_naming_the_parameter(key, value):
    groups = {"matrix": [torch.nn.Parameter(torch.randn(3, 3))]}
    with pytest.raises(ValueError, match=key):
        REGISTRY["softsignum"].build(groups, {key: value}, 10)
    with pytest.raises(ValueError, match=key):
        SoftSignum([torch.nn.Parameter(torch.randn(2, 2))], total_steps=10, **{key: value})


def test_schedule_scope_error_names_the_choices_and_is_recorded_not_searched():
    with pytest.raises(ValueError, match="invalid schedule_scope: 'layer'; valid: 'optimizer', 'group'"):
        REGISTRY["softsignum"].build(
            {"matrix": [torch.nn.Parameter(torch.randn(3, 3))]}, {"schedule_scope": "layer"}, 10
        )
    assert REGISTRY["softsignum"].defaults["schedule_scope"] == "optimizer"  # a plain key: lands in hp_* columns
    assert "schedule_scope" not in REGISTRY["softsignum"].search_space


def test_one_schedule_needs_one_set_of_schedule_settings():
    """Groups that share a schedule must agree on what defines it; per-group schedules need not."""
    a, b = [torch.nn.Parameter(torch.randn(3, 3))], [torch.nn.Parameter(torch.randn(3))]
    with pytest.raises(ValueError, match="invalid eps: .*schedule_scope='group'"):
        SoftSignum([{"params": a}, {"params": b, "eps": 1e-3}], total_steps=10)
    opt = SoftSignum([{"params": a}, {"params": b, "eps": 1e-3}], total_steps=10, schedule_scope="group")
    assert [g["eps"] for g in opt.param_groups] == [1e-4, 1e-3]


def test_a_checkpoint_without_step_counts_is_refused():
    """A Signum state from before Signum counted its steps cannot say where SoftSignum stands."""
    params = _params()
    signum = Signum(_groups(params))
    _run(signum, params, 3)
    state = signum.state_dict()
    for group in state["param_groups"]:
        del group["step"]
    with pytest.raises(ValueError, match="'step'"):
        SoftSignum(_groups(params), total_steps=10).load_state_dict(state)


def test_bad_total_steps():
    with pytest.raises(ValueError, match="total_steps"):
        SoftSignum([torch.nn.Parameter(torch.randn(2, 2))], total_steps=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("foreach", [False, True])
def test_half_precision_parameters_saturate_to_exactly_lr_and_stay_finite(dtype, foreach):
    """tau_0 / (1 - beta) = 1e10 overflows float16 (max 65504), and inf * 0 = NaN used to hit every
    coordinate whose d is exactly 0. tau * d is now formed in float32: the first soft step (tau_0 = tmax,
    every nonzero d saturated) equals Signum's step bit for bit, a zero d does not move, and the
    transition stays finite."""
    a, b = _params(dtype), _params(dtype)
    start = [p.detach().clone() for p in a]
    soft = SoftSignum(_groups(a), total_steps=8, alpha_sign=0.5, lr=1e-2, foreach=foreach)  # S = 4
    sign = Signum(_groups(b), lr=1e-2, foreach=foreach)

    def step(opt, params, t):
        for p, g in zip(params, _grads(params, t)):
            g[:2] = 0.0  # dead coordinates: d = 0 exactly in every tensor
            p.grad = g
        opt.step()

    for t in range(5):  # 4 Signum steps, then the first soft step
        step(soft, a, t)
        step(sign, b, t)
        for x, y in zip(a, b):
            assert torch.equal(x, y), f"step {t + 1}"
    assert soft.diagnostics()["phase"] == 1.0 and soft.param_groups[0]["tau_schedule"][0] == 1e9
    for t in range(5, 11):  # the rest of the transition and past K
        step(soft, a, t)
    for p, p0, wd in zip(a, start, (0.1, 0.0, 0.1, 0.0)):
        assert torch.isfinite(p).all()
        if wd == 0.0:
            assert torch.equal(p[:2], p0[:2]), "a zero direction must not move (nor turn NaN)"
    assert torch.isfinite(soft.param_groups[0]["tau_schedule"]).all()


def test_huge_tmax_over_small_one_minus_beta_stays_finite():
    """tmax / (1 - beta) above float32's range is clamped, not inf (inf * 0 = NaN)."""
    params = _params()
    opt = SoftSignum(params, total_steps=4, alpha_sign=0.5, lr=1e-2, momentum=0.999, tmax=1e38)
    for t in range(4):
        for p, g in zip(params, _grads(params, t)):
            g[:2] = 0.0
            p.grad = g
        opt.step()
    assert opt.param_groups[0]["tau_schedule"][0] == pytest.approx(1e38, rel=1e-6)
    assert all(torch.isfinite(p).all() for p in params)


def test_fast_cpu_tanh_is_accurate():
    """The foreach CPU path's tanh(x) = 2 sigmoid(2x) - 1 against a float64 tanh: |error| <= 2.5e-7,
    and saturated coordinates move by exactly lr (as Signum)."""
    x = torch.cat([torch.logspace(-9, 3, 20001), -torch.logspace(-9, 3, 20001), torch.zeros(1)])
    p = torch.zeros_like(x)
    soft_step([p], [x.clone()], torch.tensor(1.0), lr=1.0, weight_decay=0.0, foreach=True)
    err = (-p.double() - torch.tanh(x.double())).abs()
    assert err.max() <= 2.5e-7
    big = x.abs() > 10
    assert torch.equal(-p[big], torch.sign(x[big]))
    assert p[-1] == 0


@pytest.mark.parametrize("nesterov", [False, True])
def test_foreach_matches_reference(nesterov):
    """Sign phase: bit for bit. Soft phase: within the fast tanh's 2.5e-7 * lr per step."""
    a, b = _params(), _params()
    hp = {"lr": 1e-2, "momentum": 0.9, "nesterov": nesterov, "alpha_sign": 0.5}
    ref = SoftSignum(_groups(a), total_steps=20, foreach=False, **hp)
    fast = SoftSignum(_groups(b), total_steps=20, foreach=True, **hp)
    _run(ref, a, 10)
    _run(fast, b, 10)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    _run(ref, a, 12, start=10)
    _run(fast, b, 12, start=10)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=12 * 2.5e-7 * 1e-2 + 1e-6)
    for ga, gb in zip(ref.param_groups, fast.param_groups):
        assert torch.equal(ga["tau_schedule"], gb["tau_schedule"])


# --- the sign-family baselines SoftSignum builds on -------------------------------------------


@pytest.mark.parametrize("nesterov", [False, True])
def test_signum_and_sgd_foreach_equal_reference_bit_for_bit(nesterov):
    for cls in (Signum, SGD):
        a, b = _params(), _params()
        ref = cls(_groups(a), lr=1e-2, momentum=0.9, nesterov=nesterov, foreach=False)
        fast = cls(_groups(b), lr=1e-2, momentum=0.9, nesterov=nesterov, foreach=True)
        _run(ref, a, 8)
        _run(fast, b, 8)
        for x, y in zip(a, b):
            assert torch.equal(x, y), cls.__name__


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_without_weight_decay_is_torch_sgd(nesterov):
    a, b = _params(), _params()
    ours = SGD(a, lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=0.0)
    torch_sgd = torch.optim.SGD(b, lr=0.05, momentum=0.9, nesterov=nesterov, foreach=True)
    _run(ours, a, 8)
    _run(torch_sgd, b, 8)
    for x, y in zip(a, b):  # the rule, not torch's kernels of one release: float32 tolerance
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("cls", [Signum, SoftSignum, SGD])
def test_learning_rate_is_read_at_step_time(cls):
    """The training loop rescales group["lr"] every step; decoupled decay must use that lr too."""
    params = _params()
    kwargs = {"total_steps": 10, "alpha_sign": 0.0} if cls is SoftSignum else {}
    opt = cls(_groups(params), lr=1e-2, **kwargs)
    _run(opt, params, 2)
    before = [p.detach().clone() for p in params]
    for group in opt.param_groups:
        group["lr"] = 0.0
    _run(opt, params, 2, start=2)
    for x, y in zip(params, before):
        assert torch.equal(x, y)


@pytest.mark.parametrize("nesterov", [False, True])
def test_signum_follows_the_heavy_ball_rule(nesterov):
    """Signum stores exp_avg = (1 - beta) m; its steps equal the literal heavy-ball rule of
    docs/optimizers.md#signum."""
    params = _params()
    lr, beta = 1e-2, 0.9
    opt = Signum(_groups(params), lr=lr, momentum=beta, nesterov=nesterov)
    hand = [p.detach().clone() for p in params]
    bufs = [torch.zeros_like(p) for p in params]
    decay = [0.1 if p.ndim >= 2 else 0.0 for p in params]
    for t in range(8):
        for p, m, g, wd in zip(hand, bufs, _grads(params, t), decay):
            m.mul_(beta).add_(g)  # m <- beta m + g, first step m = g
            d = g + beta * m if nesterov else m
            p.mul_(1 - lr * wd).add_(torch.sign(d), alpha=-lr)
        _run(opt, params, 1, start=t)
    for p, want in zip(params, hand):
        assert torch.equal(p.detach(), want)
    for p, m in zip(params, bufs):
        torch.testing.assert_close(opt.state[p]["exp_avg"], (1 - beta) * m, rtol=1e-5, atol=1e-7)
