"""optbench's optimizers used as a library, one test per way a torch.optim user met a failure (issue
18): ``add_param_group`` mid-run, named parameters, deepcopy / pickle, ``torch.compile`` across the
switch (slow tier), zero-size parameters, an older Signum state dict, a tensor learning rate, complex
parameters, and the routed plugin optimizer as a ``torch.optim.Optimizer``."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch.nn import Parameter

from optimizers.adamw import AdamW
from optimizers.hardswitchsign import HardSwitchSign
from optimizers.muon import Muon
from optimizers.sgd import SGD
from optimizers.signum import Signum
from optimizers.softmuon import SoftMuon
from optimizers.softsignum import SoftSignum


def _params(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [Parameter(torch.randn(*s, generator=g)) for s in shapes]


def _grads(params, step):
    g = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)


def _run(opt, params, start, stop):
    for t in range(start, stop):
        _grads(params, t)
        opt.step()


# --- add_param_group mid-run (progressive unfreezing) ------------------------------------------------


@pytest.mark.parametrize("cls", [Muon, SoftMuon])
def test_add_param_group_after_some_steps_muon_family(cls):
    kwargs, switch = ({"total_steps": 8}, {"alpha_sign": 0.5}) if cls is SoftMuon else ({}, {})
    first = _params((6, 4), (6,))
    opt = cls([{"params": first[:1], "use_muon": True, **switch}, {"params": first[1:], "use_muon": False}], **kwargs)
    _run(opt, first, 0, 5)  # SoftMuon: past the switch (S = 4)
    later = _params((5, 3), (3,), seed=1)
    before = [p.detach().clone() for p in later]
    opt.add_param_group({"params": later, "lr": 0.05, **switch})  # plain group: split into a Muon and an AdamW group
    new_muon, new_aux = opt.param_groups[-2:]
    assert new_muon["use_muon"] and new_muon["params"] == [later[0]] and new_muon["lr"] == 0.05
    assert not new_aux["use_muon"] and new_aux["params"] == [later[1]] and new_aux["lr"] == 1e-3  # the aux lr
    assert new_muon["step"] == opt.param_groups[0]["step"] == 5  # joins the run's clock
    if cls is SoftMuon:
        assert new_muon["tau_schedule"] is opt.param_groups[0]["tau_schedule"]  # one pooled schedule
    _run(opt, first + later, 5, 8)
    assert all(not torch.equal(b, p) for b, p in zip(before, later))
    # A complete group with its own flag steps too.
    opt.add_param_group({"params": _params((4, 4), seed=2), "use_muon": True, "lr": 0.01, **switch})
    _run(opt, [p for g in opt.param_groups for p in g["params"]], 8, 9)


def test_add_param_group_after_the_switch_joins_the_schedule_and_the_gain():
    a, b = _params((5, 4)), _params((3, 3), seed=1)
    soft = SoftSignum(a, total_steps=6, alpha_sign=0.5)
    hard = HardSwitchSign(copy.deepcopy(a), total_steps=6, alpha_sign=0.5, switch_scale=2.0)
    for opt, ps in ((soft, a), (hard, hard.param_groups[0]["params"])):
        _run(opt, ps, 0, 4)
    soft.add_param_group({"params": b})
    hard.add_param_group({"params": copy.deepcopy(b), "switch_scale": 0.5})
    assert (
        soft.param_groups[1]["step"] == 4
        and soft.param_groups[1]["tau_schedule"] is soft.param_groups[0]["tau_schedule"]
    )
    torch.testing.assert_close(hard.param_groups[1]["sgd_gain"], hard.param_groups[0]["sgd_gain"] / 4)


# --- named parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Muon, SoftMuon])
def test_named_parameters(cls):
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Linear(6, 2))
    kwargs = {"total_steps": 10} if cls is SoftMuon else {}
    named = list(model.named_parameters())
    routed = cls([{"params": named[0::2], "use_muon": True}, {"params": named[1::2], "use_muon": False}], **kwargs)
    plain = cls(model.named_parameters(), **kwargs)  # split by ndim, names kept per group
    for opt in (routed, plain):
        names = [g["param_names"] for g in opt.state_dict()["param_groups"]]
        assert names == [["0.weight", "1.weight"], ["0.bias", "1.bias"]]
        opt.zero_grad()
        model(torch.randn(3, 4)).sum().backward()
        opt.step()
        assert len(opt.state) == 4


# --- deepcopy and pickle -----------------------------------------------------------------------


@pytest.mark.parametrize("cls", [SoftSignum, HardSwitchSign, SoftMuon])
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copy_keeps_total_steps_and_takes_new_groups(cls, how):
    params = _params((4, 3), (3,))
    opt = cls(params, total_steps=12, alpha_sign=0.5)
    _run(opt, params, 0, 7)
    twin = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
    assert twin.total_steps == 12
    twin.add_param_group({"params": _params((2, 2), seed=3)})
    assert twin.param_groups[-1]["total_steps"] == 12 and twin.param_groups[-1]["step"] == 7


# --- torch.compile across the switch (slow: ~20 s of compilation each) --------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("cls", [SoftSignum, SoftMuon])
def test_compiled_step_crosses_the_switch(cls):
    """The temperature fit runs in torch, so a compiled ``step`` can take the switch step; it matches
    the eager optimizer."""
    eager_params, compiled_params = _params((6, 4), (4,)), _params((6, 4), (4,))

    def make(ps):
        if cls is SoftMuon:
            return cls(
                [{"params": ps[:1], "use_muon": True, "alpha_sign": 0.5}, {"params": ps[1:], "use_muon": False}],
                total_steps=6,
            )
        return cls(ps, total_steps=6, alpha_sign=0.5)

    eager, compiled_opt = make(eager_params), make(compiled_params)
    step = torch.compile(compiled_opt.step)
    for t in range(6):
        _grads(eager_params, t)
        _grads(compiled_params, t)
        eager.step()
        step()
    assert compiled_opt.param_groups[0]["tau_schedule"] is not None
    for a, b in zip(eager_params, compiled_params):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


# --- zero-size parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: Muon(ps),
        lambda ps: SoftMuon(ps, total_steps=4, alpha_sign=0.5),
        lambda ps: SoftSignum(
            [{"params": ps[:1]}, {"params": ps[1:]}], total_steps=4, alpha_sign=0.5, schedule_scope="group"
        ),
        lambda ps: HardSwitchSign(ps, total_steps=4, alpha_sign=0.5),
    ],
    ids=["muon", "softmuon", "softsignum-a-group-of-zero-size-only", "hardswitchsign"],
)
def test_zero_size_parameters(make):
    empty, weight = Parameter(torch.randn(0, 5)), Parameter(torch.randn(3, 5))
    before = weight.detach().clone()
    opt = make([empty, weight])
    for t in range(6):  # across the switch and past K
        _grads([empty, weight], t)
        opt.step()
    assert empty.shape == (0, 5) and torch.isfinite(weight).all() and not torch.equal(weight, before)


def test_softsignum_with_only_zero_size_parameters_steps_past_the_switch():
    empty = Parameter(torch.randn(0, 5))
    opt = SoftSignum([empty], total_steps=4, alpha_sign=0.5)
    for t in range(6):
        _grads([empty], t)
        opt.step()
    assert opt.param_groups[0]["tau_schedule"] is None and opt.param_groups[0]["step"] == 6


# --- an older Signum state dict ---------------------------------------------------------------------


def test_signum_loads_a_state_dict_from_before_it_counted_steps():
    params = _params((4, 3), (3,))
    opt = Signum(params)
    _run(opt, params, 0, 3)
    state = opt.state_dict()
    for group in state["param_groups"]:
        del group["step"], group["foreach"]
    fresh = Signum(copy.deepcopy(params))
    fresh.load_state_dict(state)
    assert [g["step"] for g in fresh.param_groups] == [0] and fresh.param_groups[0]["foreach"] is True
    _run(fresh, fresh.param_groups[0]["params"], 3, 4)
    assert fresh.param_groups[0]["step"] == 1


# --- a tensor learning rate ---------------------------------------------------------------------------

MAKERS = {
    "AdamW": lambda ps, lr: AdamW(ps, lr=lr),
    "Signum": lambda ps, lr: Signum(ps, lr=lr),
    "SGD": lambda ps, lr: SGD(ps, lr=lr),
    "SoftSignum": lambda ps, lr: SoftSignum(ps, total_steps=6, alpha_sign=0.5, lr=lr),
    "HardSwitchSign": lambda ps, lr: HardSwitchSign(ps, total_steps=6, alpha_sign=0.5, lr=lr),
    "Muon": lambda ps, lr: Muon(ps, lr=lr),
    "SoftMuon": lambda ps, lr: SoftMuon(ps, total_steps=6, alpha_sign=0.5, lr=lr),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_a_0d_tensor_lr_steps_as_the_float_and_follows_a_scheduler(name):
    a, b = _params((5, 4), (4,)), _params((5, 4), (4,))
    lr = torch.tensor(1e-2)
    ref, opt = MAKERS[name](a, 1e-2), MAKERS[name](b, lr)
    sched_ref = torch.optim.lr_scheduler.StepLR(ref, step_size=2, gamma=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for t in range(8):  # across the switch
        _grads(a, t)
        _grads(b, t)
        ref.step()
        opt.step()
        sched_ref.step()
        sched.step()
    assert torch.is_tensor(opt.param_groups[0]["lr"]) and float(opt.param_groups[0]["lr"]) == pytest.approx(1e-2 / 16)
    for x, y in zip(a, b):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        MAKERS[name](_params((2, 2)), torch.tensor([1e-3, 1e-3]))


# --- complex parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(MAKERS) - {"AdamW"}))
def test_complex_parameters_are_refused_naming_the_optimizer(name):
    z = Parameter(torch.randn(3, 3, dtype=torch.complex64))
    with pytest.raises(ValueError, match=f"{name} does not support complex parameters"):
        MAKERS[name]([Parameter(torch.randn(2, 2)), z], 1e-3)
    opt = MAKERS[name]([Parameter(torch.randn(2, 2))], 1e-3)
    with pytest.raises(ValueError, match=f"{name} does not support complex parameters"):
        opt.add_param_group({"params": [z]})
    assert len(opt.param_groups) == 1  # nothing half-added


def test_adamw_takes_complex_parameters_as_torch_does():
    z = Parameter(torch.randn(3, 3, dtype=torch.complex64))
    r = Parameter(torch.view_as_real(z).detach().clone())
    opt_z, opt_r = AdamW([z]), AdamW([r])
    for _ in range(3):
        r.grad = torch.randn_like(r)
        z.grad = torch.view_as_complex(r.grad.clone())
        opt_z.step()
        opt_r.step()
    torch.testing.assert_close(torch.view_as_real(z).detach(), r.detach())


# --- the routed plugin optimizer -----------------------------------------------------------------------


class HeavyBall(torch.optim.Optimizer):
    """A user's plain optimizer, routed as a Muon-like plugin."""

    optbench_routing = "matrix"

    def __init__(self, params, lr=0.05, momentum=0.9):
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    buf = self.state[p].setdefault("buf", torch.zeros_like(p))
                    buf.mul_(group["momentum"]).add_(p.grad)
                    p.add_(buf, alpha=-float(group["lr"]))


def test_a_routed_plugin_is_one_torch_optimizer():
    from harness import plugins
    from optimizers.routed import RoutedOptimizer

    spec = plugins.wrap_optimizer_class(HeavyBall, "HeavyBall")
    w, emb, b = _params((4, 3), (6, 3), (3,))
    opt = spec.build({"matrix": [w], "embedding": [emb], "vector": [b]}, {}, 10)
    assert isinstance(opt, torch.optim.Optimizer) and isinstance(opt, RoutedOptimizer)
    calls = []
    opt.register_step_pre_hook(lambda *args: calls.append("pre"))
    opt.register_step_post_hook(lambda *args: calls.append("post"))
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    _run(opt, [w, emb, b], 0, 2)
    scheduler.step()
    assert calls == ["pre", "post"] * 2
    assert [g["lr"] for g in opt.param_groups] == [0.025, 0.0005, 0.0005]  # every part's lr scheduled
    later = _params((2, 3), (2,), seed=4)
    opt.add_param_group({"params": later})
    assert [g["route"] for g in opt.param_groups[-2:]] == ["main", "aux"]
    _run(opt, [w, emb, b, *later], 2, 3)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    twin = copy.deepcopy(opt)
    twin.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    assert torch.equal(twin.state[twin.param_groups[0]["params"][0]]["buf"], opt.state[w]["buf"])
