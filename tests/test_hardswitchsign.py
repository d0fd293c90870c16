"""HardSwitchSign: Signum until S, then SGD with momentum on the same buffer at
lr * switch_scale / rms(d_{S+1}): the rule against a float64 hand computation, the continuity the
default switch_scale promises, the foreach path against the per-tensor reference, half precision,
branching from a Signum checkpoint, and the diagnostics."""

from __future__ import annotations

import io
import math

import pytest
import torch

from optimizers import REGISTRY
from optimizers.hardswitchsign import HardSwitchSign
from optimizers.signum import Signum


def make_params(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 5), (5,), (3, 2, 2), (4,)]
    return [torch.nn.Parameter(torch.randn(s, generator=g).to(dtype)) for s in shapes]


def grads_at(params, step):
    g = torch.Generator().manual_seed(500 + step)
    return [(torch.randn(p.shape, generator=g) * (0.1 + 0.3 * i)).to(p.dtype) for i, p in enumerate(params)]


def run(opt, params, start, stop):
    for t in range(start, stop):
        for p, g in zip(params, grads_at(params, t)):
            p.grad = g
        opt.step()


def decay_split(params):
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


@pytest.mark.parametrize("foreach", [False, True])
def test_alpha_sign_one_is_signum_bit_for_bit(foreach):
    a, b = make_params(), make_params()
    hard = HardSwitchSign(decay_split(a), total_steps=6, alpha_sign=1.0, lr=1e-2, foreach=foreach)
    sign = Signum(decay_split(b), lr=1e-2, foreach=foreach)
    run(hard, a, 0, 9)  # also past K
    run(sign, b, 0, 9)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert hard.diagnostics() == {"phase": 0.0}


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("nesterov", [False, True])
def test_rule_against_a_float64_hand_computation(nesterov, foreach):
    """Signum for S steps; at S+1 gain = switch_scale / rms(d) pooled over both weight-decay groups;
    then p <- p (1 - lr wd) - lr * gain * d with the heavy-ball d, the gain fixed after the switch."""
    params = make_params(torch.float64)
    lr, beta, K, scale = 0.05, 0.8, 10, 0.7
    opt = HardSwitchSign(
        decay_split(params),
        total_steps=K,
        lr=lr,
        momentum=beta,
        nesterov=nesterov,
        alpha_sign=0.5,
        switch_scale=scale,
        foreach=foreach,
    )  # S = 5
    hand = [p.detach().clone() for p in params]
    bufs = [torch.zeros_like(p) for p in hand]
    decay = [0.1 if p.ndim >= 2 else 0.0 for p in hand]
    gain = None
    for t in range(K + 2):
        grads = grads_at(params, t)
        ds = []
        for m, g in zip(bufs, grads):
            m.mul_(beta).add_(g)
            ds.append(g + beta * m if nesterov else m.clone())
        if t == 5:  # step S + 1
            gain = scale / torch.sqrt(sum((d * d).sum() for d in ds) / sum(d.numel() for d in ds))
        for p, d, wd in zip(hand, ds, decay):
            update = torch.sign(d) if gain is None else gain * d
            p.mul_(1 - lr * wd).sub_(lr * update)
        run(opt, params, t, t + 1)
        for p, want in zip(params, hand):
            torch.testing.assert_close(p.detach(), want, rtol=0, atol=1e-13)
    assert float(opt.param_groups[0]["sgd_gain"]) == pytest.approx(float(gain), rel=1e-12)
    assert torch.equal(opt.param_groups[0]["sgd_gain"], opt.param_groups[1]["sgd_gain"])  # one pooled rms
    assert opt.diagnostics() == {"phase": 1.0, "sgd_lr": pytest.approx(lr * float(gain), rel=1e-12)}


def test_default_switch_scale_keeps_the_update_rms_continuous():
    """switch_scale = 1: the first SGD step has the RMS of a sign step, lr (no weight decay here)."""
    params = make_params()
    opt = HardSwitchSign(params, total_steps=8, alpha_sign=0.5, lr=1e-2, weight_decay=0.0)
    run(opt, params, 0, 4)
    before = torch.cat([p.detach().reshape(-1).clone() for p in params])
    run(opt, params, 4, 5)
    moved = torch.cat([p.detach().reshape(-1) for p in params]) - before
    assert moved.pow(2).mean().sqrt().item() == pytest.approx(1e-2, rel=1e-5)
    assert not torch.allclose(moved.abs(), torch.full_like(moved, 1e-2)), "an SGD step, not a sign step"


@pytest.mark.parametrize("nesterov", [False, True])
def test_foreach_equals_per_tensor_reference_bit_for_bit(nesterov):
    a, b = make_params(), make_params()
    hp = {"lr": 1e-2, "momentum": 0.9, "nesterov": nesterov, "alpha_sign": 0.5, "switch_scale": 2.0}
    ref = HardSwitchSign(decay_split(a), total_steps=10, foreach=False, **hp)
    fast = HardSwitchSign(decay_split(b), total_steps=10, foreach=True, **hp)
    run(ref, a, 0, 13)
    run(fast, b, 0, 13)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(ref.param_groups[0]["sgd_gain"], fast.param_groups[0]["sgd_gain"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("foreach", [False, True])
def test_half_precision_stays_finite(dtype, foreach):
    params = make_params(dtype)
    opt = HardSwitchSign(decay_split(params), total_steps=8, alpha_sign=0.5, lr=1e-2, foreach=foreach)
    for t in range(11):
        for p, g in zip(params, grads_at(params, t)):
            g[:1] = 0.0
            p.grad = g
        opt.step()
    assert opt.diagnostics()["phase"] == 1.0 and math.isfinite(opt.diagnostics()["sgd_lr"])
    assert all(torch.isfinite(p).all() and p.dtype == dtype for p in params)


def test_zero_direction_at_the_switch_falls_back_to_switch_scale():
    params = make_params()
    opt = HardSwitchSign(params, total_steps=4, alpha_sign=0.5, lr=1e-2, switch_scale=3.0)
    for _ in range(4):
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
    assert float(opt.param_groups[0]["sgd_gain"]) == 3.0
    assert all(torch.isfinite(p).all() for p in params)


def test_learning_rate_is_read_at_step_time_after_the_switch():
    params = make_params()
    opt = HardSwitchSign(decay_split(params), total_steps=6, alpha_sign=0.5, lr=1e-2)
    run(opt, params, 0, 4)
    before = [p.detach().clone() for p in params]
    for group in opt.param_groups:
        group["lr"] = 0.0
    run(opt, params, 4, 6)
    assert all(torch.equal(x, y) for x, y in zip(params, before))


@pytest.mark.parametrize("save_at", [3, 4])  # K = 8, S = 4: a Signum checkpoint before S, and at S
def test_branch_from_a_signum_checkpoint(save_at):
    """HardSwitchSign of K steps == Signum for S steps -> state_dict -> fresh HardSwitchSign ->
    K - S more steps, bit for bit. A checkpoint taken before S continues the sign phase first."""
    hp = {"lr": 1e-2, "momentum": 0.9, "weight_decay": 0.1, "nesterov": False}
    a, b = make_params(), make_params()
    whole = HardSwitchSign(decay_split(a), total_steps=8, alpha_sign=0.5, **hp)
    run(whole, a, 0, 11)
    parent = Signum(decay_split(b), **hp)
    run(parent, b, 0, save_at)
    buffer = io.BytesIO()
    torch.save(parent.state_dict(), buffer)
    buffer.seek(0)
    branch = HardSwitchSign(decay_split(b), total_steps=8, alpha_sign=0.5, **hp)
    branch.load_state_dict(torch.load(buffer, weights_only=True))
    assert [g["step"] for g in branch.param_groups] == [save_at, save_at]
    assert all(g["sign_steps"] == 4 and g["sgd_gain"] is None for g in branch.param_groups)
    run(branch, b, save_at, 11)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(whole.param_groups[0]["sgd_gain"], branch.param_groups[0]["sgd_gain"])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("switch_scale", 0.0),
        ("switch_scale", -1.0),
        ("switch_scale", float("inf")),
        ("alpha_sign", 1.5),
        ("momentum", 1.0),
        ("lr", -1.0),
    ],
)
def test_bad_hyperparameters_name_the_parameter(key, value):
    with pytest.raises(ValueError, match=f"invalid {key}"):
        REGISTRY["hardswitchsign"].build({"matrix": [torch.nn.Parameter(torch.randn(3, 3))]}, {key: value}, 10)


def test_switch_scale_is_searched_log_uniformly_around_one():
    space = REGISTRY["hardswitchsign"].search_space["switch_scale"]
    assert (space.low, space.high) == (0.1, 10.0) and REGISTRY["hardswitchsign"].defaults["switch_scale"] == 1.0
    assert REGISTRY["hardswitchsign"].branch_from == "signum"
