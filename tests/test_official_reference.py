"""SoftSignum and SoftMuon with their default settings against a port of the official update
(github.com/brain-lab-research/softsign at 77526d8, ``tests/reference_softsign.py``): whole
trajectories through the switch agree to float32 tolerance on CPU; the variants that used to be the
defaults do not; the official float32 constants differ from optbench's float64 fit by rounding only;
and one schedule covers every parameter whatever the weight-decay split."""

from __future__ import annotations

import math

import pytest
import torch
from reference_softsign import PortSoftMuonWithAuxAdam, PortSoftSignum, softmuon_schedule, softsignum_schedule

from optimizers import REGISTRY
from optimizers.softmuon import SoftMuon, polar_saturation, singular_values
from optimizers.softsignum import temperature_schedule

# float32 tolerance for parameters of magnitude ~1 after 60-80 steps (one or two ulps per step).
RTOL, ATOL = 1.3e-6, 1e-6


def make_roles(shapes: dict[str, list[tuple[int, ...]]], seed: int) -> dict[str, list[torch.nn.Parameter]]:
    g = torch.Generator().manual_seed(seed)
    return {role: [torch.nn.Parameter(0.5 * torch.randn(s, generator=g)) for s in ss] for role, ss in shapes.items()}


def twin_of(roles):
    """A copy of every parameter, and a map id(original) -> copy."""
    twins = {role: [torch.nn.Parameter(p.detach().clone()) for p in ps] for role, ps in roles.items()}
    mapping = {id(p): t for role in roles for p, t in zip(roles[role], twins[role])}
    return twins, mapping


SCALES = (1.0, 0.2, 3.0, 0.05, 0.5, 1.5, 0.1, 0.7, 2.0, 0.3)


def gradients(params: list[torch.Tensor], step: int) -> list[torch.Tensor]:
    """Deterministic, parameter-independent gradients (no chaotic feedback): a persistent signal plus
    fresh noise, a different scale per tensor (heterogeneity is what SoftX is for), and a dead row
    in the first tensor (``d = 0`` there: sign 0, tanh 0)."""
    fixed = torch.Generator().manual_seed(7)
    noise = torch.Generator().manual_seed(1000 + step)
    out = []
    for i, p in enumerate(params):
        signal = torch.randn(p.shape, generator=fixed)
        g = SCALES[i % len(SCALES)] * (0.3 * signal + torch.randn(p.shape, generator=noise))
        if i == 0:
            g[0] = 0.0
        out.append(g)
    return out


def set_gradients(params, twins, step):
    for p, g in zip(params, gradients(params, step)):
        p.grad = g.clone()
        twins[id(p)].grad = g.clone()


def assert_same_params(params, twins, step):
    for i, p in enumerate(params):
        torch.testing.assert_close(
            p.detach(), twins[id(p)].detach(), rtol=RTOL, atol=ATOL, msg=lambda m, i=i: f"step {step}, tensor {i}: {m}"
        )


def max_gap(params, twins) -> float:
    return max(float((p.detach() - twins[id(p)].detach()).abs().max()) for p in params)


# --- SoftSignum ----------------------------------------------------------------------------------

SIGNUM_SHAPES = {
    "matrix": [(16, 12), (8, 3, 3, 3)],
    "embedding": [(20, 6)],
    "head": [(4, 16)],
    "vector": [(12,), (8,), (16,)],
}
SIGNUM_K = 80  # alpha_sign 0.9: 72 sign steps, 8 transition steps


def softsignum_against_port(hparams: dict):
    roles = make_roles(SIGNUM_SHAPES, seed=0)
    twins_roles, twins = twin_of(roles)
    ours = REGISTRY["softsignum"].build(roles, hparams, SIGNUM_K)
    hp = REGISTRY["softsignum"].resolve(hparams)
    sign_steps = math.floor(hp["alpha_sign"] * SIGNUM_K)
    # The official class over the same two weight-decay groups as build() (1-D parameters undecayed).
    port = PortSoftSignum(
        [{"params": [twins[id(p)] for p in g["params"]], "weight_decay": g["weight_decay"]} for g in ours.param_groups],
        lr=hp["lr"],
        momentum=hp["momentum"],
        nesterov=hp["nesterov"],
        sign_iters=sign_steps,
        transition_iters=SIGNUM_K - sign_steps,
    )
    return ours, port, [p for g in ours.param_groups for p in g["params"]], twins


@pytest.mark.parametrize("hparams", [{}, {"lr": 1e-2, "nesterov": True}], ids=["defaults", "lr1e-2-nesterov"])
def test_softsignum_defaults_follow_the_official_update(hparams):
    """Default settings; then a 30x larger step (a stronger soft-phase signal against float32
    rounding) with the official code's Nesterov option."""
    ours, port, params, twins = softsignum_against_port(hparams)
    for step in range(1, SIGNUM_K + 1):
        set_gradients(params, twins, step)
        ours.step()
        port.step()
        assert_same_params(params, twins, step)
    schedules = {id(g["tau_schedule"]) for g in ours.param_groups}
    assert len(schedules) == 1, "one schedule for both weight-decay groups"
    torch.testing.assert_close(ours.param_groups[0]["tau_schedule"].double(), port.schedules[0], rtol=1e-6, atol=0)
    # The comparison covered a real transition: many coordinates were unsaturated at the end.
    diag = ours.diagnostics()
    assert diag["phase"] == 1.0 and diag["saturated_frac"] < 0.8
    assert float(port.schedules[0][-1]) < 10.0


def test_softsignum_per_group_schedule_is_not_the_official_default():
    """The variant schedule_scope='group' (optbench's earlier default) leaves the official trajectory
    by far more than the tolerance, so the test above has the power to tell them apart."""
    ours, port, params, twins = softsignum_against_port({"schedule_scope": "group"})
    for step in range(1, SIGNUM_K + 1):
        set_gradients(params, twins, step)
        ours.step()
        port.step()
    assert max_gap(params, twins) > 30 * ATOL
    assert not torch.equal(ours.param_groups[0]["tau_schedule"], ours.param_groups[1]["tau_schedule"])


# --- SoftMuon ------------------------------------------------------------------------------------

MUON_SHAPES = {
    "matrix": [(32, 16), (16, 32), (24, 16), (8, 4, 3, 3), (64, 2, 3, 3)],
    "conv_first": [(4, 3, 3, 3)],
    "embedding": [(50, 16)],
    "head": [(10, 16)],
    "vector": [(16,), (24,)],
}
MUON_K = 60  # alpha_sign 0.9: 54 Muon steps, 6 transition steps; the run goes 3 steps past K


def softmuon_against_port(hparams: dict):
    roles = make_roles(MUON_SHAPES, seed=1)
    _, twins = twin_of(roles)
    ours = REGISTRY["softmuon"].build(roles, hparams, MUON_K)
    sign_steps = math.floor(REGISTRY["softmuon"].resolve(hparams)["alpha_sign"] * MUON_K)
    groups = []
    for g in ours.param_groups:  # the official param-group layout, with our groups' settings
        group = {
            "params": [twins[id(p)] for p in g["params"]],
            "use_muon": g["use_muon"],
            "lr": g["lr"],
            "weight_decay": g["weight_decay"],
        }
        if g["use_muon"]:
            group.update(momentum=g["momentum"], sign_iters=sign_steps, transition_iters=MUON_K - sign_steps)
        else:
            group.update(betas=g["betas"], eps=g["eps"])
        groups.append(group)
    return ours, PortSoftMuonWithAuxAdam(groups), [p for g in ours.param_groups for p in g["params"]], twins


def test_softmuon_defaults_follow_the_official_update():
    ours, port, params, twins = softmuon_against_port({})
    assert any(p.ndim == 4 and p.shape[0] > p[0].numel() for p in ours.param_groups[0]["params"]), (
        "a tall conv kernel, where the reference and flattened shape scales differ"
    )
    for step in range(1, MUON_K + 4):
        set_gradients(params, twins, step)
        ours.step()
        port.step()
        assert_same_params(params, twins, step)
    muon_group = next(g for g in ours.param_groups if g["use_muon"])
    port_group = next(g for g in port.groups if g["use_muon"])
    torch.testing.assert_close(muon_group["tau_schedule"].double(), port_group["schedule"], rtol=1e-5, atol=0)
    assert ours.diagnostics()["phase"] == 1.0
    assert 1.0 < float(port_group["schedule"][-1]) < 1e3


@pytest.mark.parametrize("variant", [{"schedule_source": "nesterov"}, {"shape_scale": "flattened"}])
def test_softmuon_earlier_variants_are_not_the_official_default(variant):
    """optbench's earlier schedule source and shape scale leave the official trajectory by far more
    than the tolerance (so the test above can tell them apart)."""
    ours, port, params, twins = softmuon_against_port(variant)
    for step in range(1, MUON_K + 1):
        set_gradients(params, twins, step)
        ours.step()
        port.step()
    assert max_gap(params, twins) > 100 * ATOL


# --- the constants and dtypes the official code rounds --------------------------------------------


def test_official_float32_constants_change_the_schedule_by_rounding_only():
    """The official code forms c from a float32 1 - eps (SoftMuon: 70.6977 instead of 70.7054, 1.1e-4
    relative; SoftSignum: 4.951636 instead of 4.951719) and SoftSignum solves for the quantiles in
    float32. optbench keeps the exact constants and a float64 fit; the two schedules differ by about
    that relative amount, never more."""
    g = torch.Generator().manual_seed(5)
    d = 0.1 * torch.randn(4001, generator=g) + 0.01
    exact = softsignum_schedule(d, 100)
    rounded = softsignum_schedule(d, 100, exact_constants=False).double()
    ours = temperature_schedule(d, 100)
    torch.testing.assert_close(ours, exact, rtol=1e-6, atol=0)
    assert (rounded / exact - 1).abs().max() < 2e-4
    grads = [torch.randn(32, 16, generator=g), torch.randn(8, 4, 3, 3, generator=g)]
    exact = softmuon_schedule(grads, 100)
    rounded = softmuon_schedule(grads, 100, exact_constants=False)
    ours = temperature_schedule(singular_values(grads), 100, c=polar_saturation(1e-4))
    torch.testing.assert_close(ours, exact, rtol=1e-5, atol=0)
    free = (exact > 1.0) & (exact < 1e9)
    ratio = (rounded[free] / exact[free]).double()
    assert free.sum() > 50 and ((ratio - 1).abs() - 1.08e-4).abs().max() < 2e-6
    assert polar_saturation(1e-4) == pytest.approx(70.70537, abs=1e-5)


# --- one schedule whatever the grouping ----------------------------------------------------------


def test_softsignum_one_schedule_under_the_weight_decay_split():
    """A model with 2-D and 1-D parameters: build() makes a decayed and an undecayed group, and both
    hold the one schedule fitted to every entry of the heavy-ball d at the switch step."""
    roles = make_roles(SIGNUM_SHAPES, seed=3)
    opt = REGISTRY["softsignum"].build(roles, {"alpha_sign": 0.5}, 12)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.03, 0.0]
    params = [p for g in opt.param_groups for p in g["params"]]
    bufs = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    for step in range(1, 8):
        grads = gradients(params, step)
        for p, g, m in zip(params, grads, bufs):
            p.grad = g
            m.mul_(0.9).add_(g.double())  # the heavy-ball m, replayed in float64
        opt.step()
        if step == 7:  # the switch (S = 6)
            pooled = temperature_schedule(torch.cat([m.reshape(-1) for m in bufs]), 6)
    schedules = [g["tau_schedule"] for g in opt.param_groups]
    assert schedules[0] is schedules[1]
    torch.testing.assert_close(schedules[0].double(), pooled, rtol=1e-6, atol=0)


@pytest.mark.parametrize("scope", ["optimizer", "group"])
def test_softmuon_one_schedule_over_all_muon_groups(scope):
    """A hand-made SoftMuon with two Muon groups (different weight decay): scope 'optimizer' fits one
    schedule to the singular values of every Muon matrix's gradient; 'group' one per group."""
    roles = make_roles({"matrix": [(24, 16), (16, 16), (8, 4, 3, 3)], "vector": [(16,)]}, seed=4)
    mats = roles["matrix"]
    shared = {"use_muon": True, "alpha_sign": 0.5, "schedule_scope": scope}  # K = 10: the switch at step 6
    opt = SoftMuon(
        [
            {"params": mats[:2], "weight_decay": 0.1, **shared},
            {"params": mats[2:], "weight_decay": 0.0, **shared},
            {"params": roles["vector"], "use_muon": False},
        ],
        total_steps=10,
    )
    params = mats + roles["vector"]
    for step in range(1, 7):
        for p, g in zip(params, gradients(params, step)):
            p.grad = g
        opt.step()  # the gradients of step 6, the switch, stay set: the schedule was fitted to them
    first, second = opt.param_groups[0]["tau_schedule"], opt.param_groups[1]["tau_schedule"]
    c = polar_saturation(1e-4)

    def fit(matrices):
        return temperature_schedule(singular_values([p.grad for p in matrices]), 5, c=c)

    if scope == "optimizer":
        assert first is second
        torch.testing.assert_close(first.double(), fit(mats), rtol=1e-6, atol=0)
    else:
        torch.testing.assert_close(first.double(), fit(mats[:2]), rtol=1e-6, atol=0)
        torch.testing.assert_close(second.double(), fit(mats[2:]), rtol=1e-6, atol=0)
        assert not torch.equal(first, second)
