"""Muon and SoftMuon: the two matrix maps against their SVD definitions, the optimizers' routing,
the SoftMuon phase switch and its schedule, and state_dict round trips. CPU, a few seconds."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from optimizers import _muon_ops, muon, softmuon
from optimizers.muon import newton_schulz5
from optimizers.softmuon import polar_saturation, soft_polar
from optimizers.softsignum import temperature_schedule


def spectral_matrix(rows: int, cols: int, kappa: float, seed: int = 0, batch: tuple[int, ...] = ()):
    """``U diag(s) V^T`` (float64) with ``s`` log-spaced from 1 down to ``1/kappa``; returns (M, U, s, V)."""
    g = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    U, _ = torch.linalg.qr(torch.randn(*batch, rows, k, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(*batch, cols, k, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -math.log10(kappa), k, dtype=torch.float64).expand(*batch, k)
    return (U * s.unsqueeze(-2)) @ V.mT, U, s, V


def soft_sign_svd(U, s, V, tau):
    f = tau * s / torch.sqrt(1 + (tau * s) ** 2)
    return (U * f.unsqueeze(-2)) @ V.mT


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


# --- soft_polar ------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.1, 1.0, 10.0, 1e3, 1e9])
@pytest.mark.parametrize("shape", [(48, 80), (80, 48)])
def test_soft_polar_accurate_matches_svd(tau, shape):
    M, U, s, V = spectral_matrix(*shape, kappa=1e4)
    out = soft_polar(M.float(), tau)
    assert out.dtype == torch.float32 and out.shape == shape
    assert rel_err(out, soft_sign_svd(U, s, V, tau)) < 1e-3


def test_soft_polar_batched_and_tensor_tau():
    M, U, s, V = spectral_matrix(24, 40, kappa=1e3, batch=(2, 3))
    out = soft_polar(M.float(), torch.tensor(10.0))
    assert out.shape == (2, 3, 24, 40)
    assert rel_err(out, soft_sign_svd(U, s, V, 10.0)) < 1e-3


def test_soft_polar_limits():
    M, U, s, V = spectral_matrix(40, 64, kappa=1e2)
    Mf = M.float()
    # tau -> inf: the matrix sign U V^T; tau -> 0: tau * M (SGD on the raw momentum).
    assert rel_err(soft_polar(Mf, 1e12), U @ V.mT) < 1e-3
    assert rel_err(soft_polar(Mf, 1e-6), 1e-6 * M) < 1e-3
    # The official 5-step iteration gets the tau -> 0 end right too (A is well conditioned there).
    assert rel_err(soft_polar(Mf, 1e-6, steps=5), 1e-6 * M) < 1e-3


def test_soft_polar_five_steps_is_far_from_exact_on_ill_conditioned_input():
    """Documents the official 5-step mode (``soft_ns_steps=5``): close when tau^-2 dominates
    ``X X^T`` (small tau), far and shrunken when tau is large and the spectrum spans 1e3. Bands are
    measured values (64x96, kappa 1e3): 4e-4 at tau=1, 0.18 at tau=10, 0.71-0.73 at tau >= 1e3."""
    M, U, s, V = spectral_matrix(64, 96, kappa=1e3)
    Mf = M.float()
    errs = {}
    for tau in (1.0, 10.0, 1e3, 1e9):
        exact = soft_sign_svd(U, s, V, tau)
        five = soft_polar(Mf, tau, steps=5)
        errs[tau] = rel_err(five, exact)
        # Unconverged Z under-weights small directions: the 5-step update is never larger.
        assert five.double().norm() <= exact.norm() * (1 + 1e-4)
    assert errs[1.0] < 2e-3
    assert 0.1 < errs[10.0] < 0.3
    assert 0.6 < errs[1e3] < 0.85 and 0.6 < errs[1e9] < 0.85
    # More steps converge where the iteration's conditioning allows it (tau = 10: kappa(A) ~ 100).
    assert rel_err(soft_polar(Mf, 10.0, steps=12), soft_sign_svd(U, s, V, 10.0)) < 1e-3


@pytest.mark.parametrize("bad", [{"tau": 0.0}, {"tau": -1.0}, {"steps": 0}, {"steps": 2.5}])
def test_soft_polar_rejects_bad_arguments(bad):
    args = {"tau": 1.0, "steps": None, **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        soft_polar(torch.randn(4, 6), **args)


# --- newton_schulz5 --------------------------------------------------------------------------


def test_newton_schulz5_random_inputs_land_near_one():
    g = torch.Generator().manual_seed(1)
    for shape in [(64, 128), (128, 64), (3, 32, 96)]:
        G = torch.randn(*shape, generator=g)
        out = newton_schulz5(G)
        assert out.shape == G.shape and out.dtype == G.dtype
        sv = torch.linalg.svdvals(out)
        assert sv.min() > 0.5 and sv.max() < 1.5


@pytest.mark.parametrize("shape", [(64, 96), (96, 64), (256, 256)])
@pytest.mark.parametrize("kappa", [1e3, 1e6])
def test_newton_schulz5_ill_conditioned(shape, kappa):
    """NS5 is a matrix polynomial: ``O = U p(S) V^T``. Five steps multiply a singular value by at most
    3.4445^5 ~ 480 after the Frobenius normalisation, so only values above ~1e-3 ||G||_F can reach 1.
    Asserted: p(s) in [0.5, 1.5] for s >= 3e-3 ||G||_F; below that floor, only 0 <= p(s) < 1.5."""
    M, U, s, V = spectral_matrix(*shape, kappa=kappa)
    out = newton_schulz5(M.float()).double()
    core = U.mT @ out @ V
    p = torch.diagonal(core)
    assert (core - torch.diag(p)).norm() < 1e-4 * p.norm()  # singular vectors are kept
    lifted = s >= 3e-3 * M.norm()
    assert lifted.sum() >= shape[0] // 4
    assert p[lifted].min() > 0.5 and p[lifted].max() < 1.5
    assert p.min() >= 0 and p.max() < 1.5


def test_newton_schulz5_zero_and_vector_inputs():
    assert torch.equal(newton_schulz5(torch.zeros(8, 16)), torch.zeros(8, 16))
    with pytest.raises(ValueError, match="matrix"):
        newton_schulz5(torch.ones(5))


# --- optimizers ------------------------------------------------------------------------------


def toy_params(seed: int = 0):
    """One parameter per role, conv kernels wide and tall, a 1-D 'matrix' that must go to AdamW."""
    g = torch.Generator().manual_seed(seed)

    def P(*shape):
        return torch.nn.Parameter(torch.randn(*shape, generator=g) * 0.1)

    return {
        "matrix": [P(32, 16), P(24, 16), P(24, 16), P(8, 4, 3, 3), P(64, 2, 3, 3)],
        "conv_first": [P(4, 3, 3, 3)],
        "embedding": [P(50, 16)],
        "head": [P(10, 16)],
        "vector": [P(16), P(24)],
    }


def clone_groups(groups):
    return {role: [torch.nn.Parameter(p.detach().clone()) for p in ps] for role, ps in groups.items()}


def flat(groups):
    return [p for ps in groups.values() for p in ps]


def set_grads(params, seed):
    g = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)


def test_muon_routes_roles_and_conv_kernels():
    groups = toy_params()
    opt = muon.build(groups, muon.SPEC.resolve({}), 10)
    muon_groups = [g for g in opt.param_groups if g["use_muon"]]
    aux_groups = [g for g in opt.param_groups if not g["use_muon"]]
    assert len(muon_groups) == 1
    assert {id(p) for p in muon_groups[0]["params"]} == {id(p) for p in groups["matrix"]}
    aux_ids = {id(p): g["weight_decay"] for g in aux_groups for p in g["params"]}
    for role in ("conv_first", "embedding", "head"):
        assert all(aux_ids[id(p)] == 0.01 for p in groups[role])
    assert all(aux_ids[id(p)] == 0.0 for p in groups["vector"])  # no decay on 1-D, ever

    # A 1-D parameter declared as a matrix is not orthogonalised: it goes to the AdamW, undecayed.
    stray = torch.nn.Parameter(torch.randn(7))
    opt = muon.build({"matrix": [groups["matrix"][0], stray]}, muon.SPEC.resolve({}), 10)
    assert [p is stray for g in opt.param_groups if not g["use_muon"] for p in g["params"]] == [True]
    assert [g["weight_decay"] for g in opt.param_groups if not g["use_muon"]] == [0.0]


@pytest.mark.parametrize("shape_scale", ["reference", "flattened"])
def test_muon_step_matches_the_formula(shape_scale):
    """First step from zero momentum, conv kernels flattened to (out, in*kh*kw) for NS5; the tall-matrix
    scale sqrt(max(1, rows/cols)) of the unflattened tensor (reference: 1 for a conv kernel) or of the
    flattened matrix."""
    groups = toy_params()
    hp = muon.SPEC.resolve({"lr": 0.05, "weight_decay": 0.1, "momentum": 0.9, "shape_scale": shape_scale})
    opt = muon.build(groups, hp, 10)
    before = [p.detach().clone() for p in groups["matrix"]]
    set_grads(flat(groups), seed=3)
    opt.step()
    for p, p0 in zip(groups["matrix"], before):
        g = p.grad
        m = torch.zeros_like(g).lerp_(g, 0.1)
        u = g.lerp(m, 0.9)
        rows, cols = p.shape[0], p[0].numel()
        ortho = newton_schulz5(u.reshape(rows, cols)).reshape(p.shape)
        scale = math.sqrt(max(1, rows / cols)) if shape_scale == "flattened" or p.ndim == 2 else 1.0
        expected = p0 * (1 - 0.05 * 0.1) - 0.05 * scale * ortho
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6)


def test_muon_nesterov_flag_changes_the_input():
    runs = []
    for nesterov in (True, False):
        groups = toy_params()
        opt = muon.build(groups, muon.SPEC.resolve({"nesterov": nesterov}), 10)
        for k in range(2):
            set_grads(flat(groups), seed=10 + k)
            opt.step()
        runs.append(groups["matrix"][0].detach().clone())
    assert not torch.equal(*runs)


def test_aux_adamw_equals_torch_adamw():
    groups = toy_params()
    hp = muon.SPEC.resolve({"aux_lr": 3e-3, "aux_betas": (0.8, 0.99), "aux_eps": 1e-7, "aux_weight_decay": 0.05})
    opt = muon.build(groups, hp, 20)
    aux = groups["conv_first"] + groups["embedding"] + groups["head"] + groups["vector"]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in aux]
    torch_opt = torch.optim.AdamW(
        [
            {"params": [r for r in ref if r.ndim >= 2], "weight_decay": 0.05},
            {"params": [r for r in ref if r.ndim < 2], "weight_decay": 0.0},
        ],
        lr=3e-3,
        betas=(0.8, 0.99),
        eps=1e-7,
        foreach=True,
    )
    for k in range(6):
        set_grads(flat(groups), seed=100 + k)
        for p, r in zip(aux, ref):
            r.grad = p.grad.clone()
        if k == 3:  # the training loop rescales every group's lr in place; both must follow
            for group in opt.param_groups + torch_opt.param_groups:
                group["lr"] = group["lr"] * 0.5
        opt.step()
        torch_opt.step()
    # Same op order as torch's foreach AdamW, so today they agree bit for bit; a tolerance keeps the
    # test about the update rule, not about torch's kernels of one release.
    for p, r in zip(aux, ref):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-6, atol=1e-8)


def run_steps(opt, params, seeds):
    for seed in seeds:
        set_grads(params, seed)
        opt.step()


def test_softmuon_equals_muon_before_the_switch():
    K = 10  # alpha_sign 0.9 -> 9 Muon steps, the switch at step 10
    g_muon, g_soft = toy_params(), toy_params()
    hp = muon.SPEC.resolve({"lr": 0.03})
    opt_m = muon.build(g_muon, hp, K)
    opt_s = softmuon.build(g_soft, softmuon.SPEC.resolve({"lr": 0.03}), K)
    for step in range(1, K + 1):
        run_steps(opt_m, flat(g_muon), [step])
        run_steps(opt_s, flat(g_soft), [step])
        same = all(torch.equal(a, b) for a, b in zip(flat(g_muon), flat(g_soft)))
        assert same == (step <= 9), step
        assert opt_s.diagnostics()["phase"] == (step > 9)


@pytest.mark.parametrize("source", ["gradient", "nesterov"])
def test_softmuon_schedule_and_soft_update(source):
    """At the switch the schedule comes from the singular values of the raw gradients (default, as
    the official code) or of the Nesterov input u that Phi maps (schedule_source="nesterov"), with
    c = 70.705; the soft step is lr * shape_scale * soft_polar(u, tau_j, 5)."""
    K, lr, beta = 20, 0.02, 0.95
    groups = toy_params()
    hp = {"alpha_sign": 0.5, "lr": lr, "weight_decay": 0.0, "schedule_source": source}
    opt = softmuon.build(groups, softmuon.SPEC.resolve(hp), K)
    mats = groups["matrix"]
    run_steps(opt, flat(groups), range(10))
    group = next(g for g in opt.param_groups if g["use_muon"])
    assert group["sign_steps"] == 10 and group["tau_schedule"] is None
    for j, seed in enumerate(range(10, 13)):
        set_grads(flat(groups), seed)
        us = [p.grad.lerp(opt.state[p]["momentum_buffer"].lerp(p.grad, 1 - beta), beta) for p in mats]
        fitted = us if source == "nesterov" else [p.grad.clone() for p in mats]
        before = [p.detach().clone() for p in mats]
        opt.step()
        if j == 0:
            s = torch.cat([torch.linalg.svdvals(_muon_ops.as_matrix(m).double()) for m in fitted])
            expected = temperature_schedule(s, K - 10, c=polar_saturation(1e-4))
            torch.testing.assert_close(group["tau_schedule"].double(), expected, rtol=1e-4, atol=0)
            assert group["tau_schedule"][0] == 1e9 and bool((group["tau_schedule"].diff() <= 0).all())
        tau = group["tau_schedule"][j]
        for p, p0, u in zip(mats, before, us):
            step = soft_polar(_muon_ops.as_matrix(u), tau, steps=5).reshape(p.shape) * _muon_ops.shape_scale(
                p, "reference"
            )
            torch.testing.assert_close(p.detach(), p0 - lr * step, rtol=1e-5, atol=1e-7)

    def saturated(tensors):
        s = torch.cat([torch.linalg.svdvals(_muon_ops.as_matrix(t)) for t in tensors]).double()
        return float((tau * s >= polar_saturation(1e-4)).double().mean())

    bufs = [opt.state[p]["momentum_buffer"] for p in mats]
    diag = opt.diagnostics()  # gradients still set: measured on u = lerp(g, m, beta)
    assert diag["phase"] == 1.0 and diag["tau"] == pytest.approx(float(tau))
    assert diag["saturated_frac"] == pytest.approx(saturated([p.grad.lerp(b, beta) for p, b in zip(mats, bufs)]))
    opt.zero_grad(set_to_none=True)  # as the training loop leaves it at eval points: measured on m
    assert opt.diagnostics()["saturated_frac"] == pytest.approx(saturated(bufs))


def test_ns_dtype_sets_the_iteration_dtype():
    """auto is float32 on CPU; bfloat16 (the reference's dtype) rounds differently but lands close."""
    M, _, _, _ = spectral_matrix(32, 48, kappa=10)
    G = M.float()
    for fn in (lambda X, dt: newton_schulz5(X, dtype=dt), lambda X, dt: soft_polar(X, 3.0, steps=5, dtype=dt)):
        auto, f32, bf16 = fn(G, "auto"), fn(G, "float32"), fn(G, torch.bfloat16)
        assert torch.equal(auto, f32) and auto.dtype == torch.float32 and bf16.dtype == torch.float32
        assert not torch.equal(bf16, f32) and rel_err(bf16, f32) < 0.05
    runs = {}
    for ns_dtype in ("auto", "bfloat16"):
        groups = toy_params()
        opt = softmuon.build(groups, softmuon.SPEC.resolve({"alpha_sign": 0.5, "ns_dtype": ns_dtype}), 6)
        run_steps(opt, flat(groups), range(6))  # both NS5 and the soft polar iteration
        runs[ns_dtype] = groups["matrix"][0].detach()
    assert not torch.equal(runs["auto"], runs["bfloat16"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_softmuon_half_precision_parameters_stay_finite(dtype):
    """Through the switch and past K with dead units (zero gradients). float16 runs Muon matrices only:
    the auxiliary AdamW, like torch.optim.AdamW, rounds eps = 1e-8 to 0 in float16, so a coordinate whose
    gradient is 0 from the first step is 0 / 0 there (optimizers/muon.py, "Half precision")."""
    roles = toy_params() if dtype == torch.bfloat16 else {"matrix": toy_params()["matrix"]}
    groups = {role: [torch.nn.Parameter(p.detach().to(dtype)) for p in ps] for role, ps in roles.items()}
    opt = softmuon.build(groups, softmuon.SPEC.resolve({"alpha_sign": 0.5}), 8)
    for seed in range(11):  # 4 Muon steps, the switch, the transition, 3 steps past K
        g = torch.Generator().manual_seed(seed)
        for p in flat(groups):
            grad = torch.randn(p.shape, generator=g)
            grad[:1] = 0.0  # a dead output unit in every tensor
            p.grad = grad.to(dtype)
        opt.step()
    group = next(g for g in opt.param_groups if g["use_muon"])
    assert torch.isfinite(group["tau_schedule"]).all() and opt.diagnostics()["phase"] == 1.0
    assert all(torch.isfinite(p).all() and p.dtype == dtype for p in flat(groups))


@pytest.mark.parametrize("soft_ns_steps", [5, None])
def test_softmuon_state_dict_round_trip_after_the_switch(soft_ns_steps):
    K = 8  # 4 Muon steps, 4 soft steps; the run goes 3 steps past K (holding the last tau)
    hp = softmuon.SPEC.resolve({"alpha_sign": 0.5, "soft_ns_steps": soft_ns_steps})
    groups = toy_params()
    opt = softmuon.build(groups, hp, K)
    run_steps(opt, flat(groups), range(6))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    resumed_groups = clone_groups(groups)
    resumed = softmuon.build(resumed_groups, hp, K)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    opt.zero_grad(set_to_none=True)
    assert resumed.diagnostics() == opt.diagnostics()
    run_steps(opt, flat(groups), range(6, 11))
    run_steps(resumed, flat(resumed_groups), range(6, 11))
    for a, b in zip(flat(groups), flat(resumed_groups)):
        assert torch.equal(a, b)
    group = next(g for g in resumed.param_groups if g["use_muon"])
    assert group["step"] == 11 and group["tau_schedule"].numel() == 4
    assert resumed.diagnostics()["tau"] == float(group["tau_schedule"][-1])
    assert all(torch.isfinite(p).all() for p in flat(resumed_groups))


def test_softmuon_alpha_one_never_switches():
    groups = toy_params()
    opt = softmuon.build(groups, softmuon.SPEC.resolve({"alpha_sign": 1.0}), 3)
    run_steps(opt, flat(groups), range(5))
    assert opt.diagnostics()["phase"] == 0.0
    assert next(g for g in opt.param_groups if g["use_muon"])["tau_schedule"] is None


@pytest.mark.parametrize(
    "spec_module, name, value",
    [
        (muon, "lr", -0.1),
        (muon, "weight_decay", -1.0),
        (muon, "momentum", 1.0),
        (muon, "momentum", -0.2),
        (muon, "nesterov", "yes"),
        (muon, "aux_lr", -1e-3),
        (muon, "aux_betas", (0.9, 1.0)),
        (muon, "aux_eps", 0.0),
        (muon, "aux_weight_decay", -0.01),
        (softmuon, "lr", float("nan")),
        (softmuon, "alpha_sign", 1.5),
        (softmuon, "alpha_sign", -0.1),
        (softmuon, "soft_ns_steps", 0),
        (softmuon, "soft_ns_steps", 2.5),
        (softmuon, "eps", 0.0),
        (softmuon, "eps", 1.0),
        (softmuon, "tmax", 0.5),
        (softmuon, "newton_iters", -1),
        (muon, "shape_scale", "flat"),
        (muon, "ns_dtype", "float16"),
        (softmuon, "shape_scale", None),
        (softmuon, "ns_dtype", "bf16"),
        (softmuon, "schedule_source", "momentum"),
        (softmuon, "schedule_scope", "role"),
    ],
)
def test_bad_hyperparameters_name_the_parameter(spec_module, name, value):
    with pytest.raises(ValueError, match=rf"invalid {name}\b"):
        spec_module.SPEC.build(toy_params(), {name: value}, 10)


@pytest.mark.parametrize(
    ("module", "key", "choices"),
    [
        (muon, "shape_scale", "'reference', 'flattened'"),
        (muon, "ns_dtype", "'auto', 'bfloat16', 'float32'"),
        (softmuon, "schedule_source", "'gradient', 'nesterov'"),
        (softmuon, "schedule_scope", "'optimizer', 'group'"),
    ],
)
def test_variant_options_name_their_choices_and_are_recorded_not_searched(module, key, choices):
    with pytest.raises(ValueError, match=f"invalid {key}: 'nope'; valid: {choices}"):
        module.SPEC.build(toy_params(), {key: "nope"}, 10)
    assert module.DEFAULTS[key] == choices.split("'")[1]  # the first choice, the official one, is the default
    assert key not in module.SEARCH_SPACE


def test_unknown_hyperparameter_is_rejected():
    with pytest.raises(ValueError, match="soft_ns_steps"):  # the message lists the valid names
        softmuon.SPEC.build(toy_params(), {"ns_steps": 5}, 10)


def test_defaults_and_search_space():
    for module in (muon, softmuon):
        for key, dist in module.SEARCH_SPACE.items():
            assert dist.contains(module.DEFAULTS[key]), key
    assert softmuon.DEFAULTS["soft_ns_steps"] == 5 and polar_saturation(1e-4) == pytest.approx(70.705, abs=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_paths_bf16():
    M, U, s, V = spectral_matrix(64, 96, kappa=1e2)
    G = M.float().cuda()
    out = newton_schulz5(G)
    assert out.dtype == torch.float32 and out.is_cuda
    sv = torch.linalg.svdvals(out.cpu())
    assert sv.max() < 1.5 and sv[:32].min() > 0.5
    tau = torch.tensor(3.0, device="cuda")
    assert rel_err(soft_polar(G, tau).cpu(), soft_sign_svd(U, s, V, 3.0)) < 1e-3
    assert rel_err(soft_polar(G, tau, steps=12).cpu(), soft_sign_svd(U, s, V, 3.0)) < 5e-2  # bf16
    groups = {role: [p.cuda() for p in ps] for role, ps in toy_params().items()}
    groups = {role: [torch.nn.Parameter(p) for p in ps] for role, ps in groups.items()}
    opt = softmuon.build(groups, softmuon.SPEC.resolve({"alpha_sign": 0.5}), 6)
    for _ in range(8):
        for p in flat(groups):
            p.grad = torch.randn_like(p)
        opt.step()
    assert all(torch.isfinite(p).all() for p in flat(groups))
    assert copy.deepcopy(opt.state_dict())["param_groups"][0]["step"] == 8
