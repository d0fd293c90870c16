"""The delayed-gradient condition (harness/run/delay.py, issue 22 items 1-2) at the module level: delay 0
is bit-identical to no delay; step t applies g_{t-d} (zero for t < d, so step 1 applies g_0 at d = 1);
the buffered delay equals recomputing the gradient at stashed weights (PipeDream-2BW's weight
stashing); the scalar quadratic is stable exactly where the delayed recursion predicts; optimizer
buffers take in the stale gradient; a resumed or SoftX-branched delayed run equals an uninterrupted
one; bad delays and mismatched checkpoints are refused with a clear ValueError."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from harness.run.delay import GradientDelay, check_delay
from optimizers import REGISTRY

# --------------------------------------------------------------------------------------------------
# A deterministic full-batch problem: least squares through a small two-layer net (a matrix for
# Muon, biases for the 1-D rules), and the optimizers it is trained with.


def problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(48, 6, generator=g)
    y = torch.randn(48, 3, generator=g)
    return x, y


class Net(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(100 + seed)
        self.inp = nn.Linear(6, 8)
        self.out = nn.Linear(8, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        return self.out(torch.tanh(self.inp(x)))

    def roles(self) -> dict[str, list[nn.Parameter]]:
        return {"matrix": [self.inp.weight], "head": [self.out.weight], "vector": [self.inp.bias, self.out.bias]}


def loss_of(model: nn.Module, data) -> torch.Tensor:
    x, y = data
    return ((model(x) - y) ** 2).mean()


TOTAL = 12  # steps of the short runs; the soft optimizers switch at alpha_sign * TOTAL = 6

KINDS = ["torch_sgd", "torch_adamw", "sgd", "adamw", "signum", "muon", "softsignum", "softmuon"]


def make_opt(kind: str, model: Net) -> torch.optim.Optimizer:
    if kind == "torch_sgd":
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    if kind == "torch_adamw":
        return torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    hparams = {"alpha_sign": 0.5} if "alpha_sign" in REGISTRY[kind].defaults else {}
    return REGISTRY[kind].build(model.roles(), hparams, TOTAL)


def step(model, opt, data, delay: GradientDelay | None) -> torch.Tensor:
    """One loop step as harness/run/loop.py will run it: backward, the swap, (clipping), step, zero."""
    loss = loss_of(model, data)
    loss.backward()
    if delay is not None:
        delay.apply()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach()


def assert_same_params(a: nn.Module, b: nn.Module, what: str) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), f"{what}: {name} differs"


def assert_same_state(a: torch.optim.Optimizer, b: torch.optim.Optimizer, what: str) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["state"].keys() == sb["state"].keys(), what
    for k, entry in sa["state"].items():
        for key, value in entry.items():
            other = sb["state"][k][key]
            same = torch.equal(value, other) if torch.is_tensor(value) else value == other
            assert same, f"{what}: state[{k}][{key}] differs"


def serialised(obj) -> dict:
    buf = io.BytesIO()
    torch.save(obj, buf)  # a real round trip: nothing aliases the live tensors
    buf.seek(0)
    return torch.load(buf, map_location="cpu", weights_only=False)


# --------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("bad", [-1, 1.0, 1.5, True, "1", None])
def test_invalid_delay_is_refused_with_the_valid_choices(bad):
    with pytest.raises(ValueError, match=r"invalid delay.*integer >= 0"):
        GradientDelay([nn.Parameter(torch.zeros(2))], bad)
    with pytest.raises(ValueError, match="invalid delay"):
        check_delay(bad)


def test_check_delay_is_importable_without_torch():
    """Sweep-file and RunSpec validation (torch-free modules) can check a delay with harness.run.delay."""
    code = (
        "import sys; from harness.run.delay import check_delay; assert check_delay(2) == 2; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_params_must_be_tensors_and_are_deduplicated():
    p = nn.Parameter(torch.zeros(3))
    assert GradientDelay([p, p], 1).params == [p]
    with pytest.raises(TypeError, match="tensors"):
        GradientDelay([{"params": [p]}], 1)


# --------------------------------------------------------------------------------------------------
# Delay 0: nothing happens


@pytest.mark.parametrize("kind", ["torch_adamw", "signum", "softsignum"])
def test_delay_zero_is_bit_identical_to_no_wrapper(kind):
    data = problem()
    plain, wrapped = Net(), Net()
    opt_plain, opt_wrapped = make_opt(kind, plain), make_opt(kind, wrapped)
    delay = GradientDelay(wrapped.parameters(), 0)
    for t in range(TOTAL):
        step(plain, opt_plain, data, None)
        loss = loss_of(wrapped, data)
        loss.backward()
        grads = [p.grad for p in wrapped.parameters()]
        delay.apply()
        assert all(p.grad is g for p, g in zip(wrapped.parameters(), grads)), "delay 0 touched a gradient"
        opt_wrapped.step()
        opt_wrapped.zero_grad(set_to_none=True)
        assert_same_params(plain, wrapped, f"{kind} step {t}")
    assert_same_state(opt_plain, opt_wrapped, kind)
    assert delay.nbytes() == 0 and delay.buffered() == [] and delay.state_dict()["buffer"] is None


# --------------------------------------------------------------------------------------------------
# Which gradient each step applies


@pytest.mark.parametrize("d", [1, 2, 3])
def test_step_t_applies_the_gradient_of_step_t_minus_d(d):
    """Gradients stamped with their step: g_t = t + 1 everywhere. Step t hands the optimizer g_{t-d},
    a zero while t < d (0-based steps: at d = 1, step 0 applies zero and step 1 applies g_0)."""
    params = [nn.Parameter(torch.zeros(2, 3)), nn.Parameter(torch.zeros(4, dtype=torch.float64))]
    delay = GradientDelay(params, d)
    for t in range(8):
        for p in params:
            p.grad = torch.full_like(p, t + 1.0)
        assert delay.warming_up == (t < d)
        delay.apply()
        for p in params:
            expected = torch.full_like(p, t + 1.0 - d) if t >= d else torch.zeros_like(p)
            assert p.grad.dtype == p.dtype and torch.equal(p.grad, expected), (t, p.grad)
        # the ring holds the last d gradients, oldest first
        assert [s[0][0, 0].item() for s in delay.buffered()] == [max(0.0, s + 1.0) for s in range(t - d + 1, t + 1)]
        for p in params:
            p.grad = None
    assert delay.steps == 8 and delay.nbytes() == d * (6 * 4 + 4 * 8)


def test_step_one_applies_g0_under_sgd():
    """d = 1 with plain SGD: step 0 leaves W unchanged (zero gradient, no decay); step 1 applies g_0,
    the gradient of step 0's batch, not g_1 (another batch, so g_1 != g_0 although W_1 = W_0)."""
    batch0, batch1 = problem(0), problem(7)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    delay = GradientDelay(model.parameters(), 1)
    w0 = [p.detach().clone() for p in model.parameters()]
    loss_of(model, batch0).backward()
    g0 = [p.grad.clone() for p in model.parameters()]
    delay.apply()
    opt.step()
    opt.zero_grad(set_to_none=True)
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), w0)), "step 0 moved the weights"
    step(model, opt, batch1, delay)
    expected = [w.add(g, alpha=-0.1) for w, g in zip(w0, g0)]
    assert all(torch.equal(p, e) for p, e in zip(model.parameters(), expected)), "step 1 did not apply g0"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_start_up_zeros_move_no_weight_without_decay(name):
    """The first d steps apply zero gradients: with weight_decay = 0 no registered optimizer moves a
    weight (sign(0) = 0, Newton-Schulz of 0 is 0, Adam's m = 0), and real gradients do move them."""
    data, d = problem(), 2
    model = Net()
    defaults = REGISTRY[name].defaults
    hparams = {key: 0.0 for key in ("weight_decay", "aux_weight_decay") if key in defaults}  # Muon's AdamW too
    hparams.update({"alpha_sign": 0.5} if "alpha_sign" in defaults else {})
    opt, delay = REGISTRY[name].build(model.roles(), hparams, TOTAL), GradientDelay(model.parameters(), d)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(d):
        step(model, opt, data, delay)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before)), name
    step(model, opt, data, delay)
    assert not torch.equal(model.inp.weight, before[0]), name


def test_a_missing_gradient_stays_missing_d_steps_later():
    """``.grad is None`` (parameter unused at that step) is handed out as None d steps later, so the
    optimizer skips the parameter exactly when the synchronous run did; the zero start is a zero for
    every parameter, also one without a gradient at the first call."""
    used, unused = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2, 2))
    delay = GradientDelay([used, unused], 2)
    pattern = [False, True, False, False, True]  # whether `unused` gets a gradient at step t
    for t, has in enumerate(pattern):
        used.grad = torch.full((3,), t + 1.0)
        unused.grad = torch.full((2, 2), t + 1.0) if has else None
        delay.apply()
        if t < 2:
            assert torch.equal(unused.grad, torch.zeros(2, 2))
        elif pattern[t - 2]:
            assert torch.equal(unused.grad, torch.full((2, 2), t - 1.0))
        else:
            assert unused.grad is None
        assert torch.equal(used.grad, torch.full((3,), max(0.0, t - 1.0)))
    # a parameter that never gets a gradient keeps its weights under AdamW once the start is over
    p = nn.Parameter(torch.ones(4, 4))
    opt, delay = torch.optim.AdamW([p], lr=0.1, weight_decay=0.5), GradientDelay([p], 1)
    delay.apply()
    opt.step()  # the start-up zero: decay only
    opt.zero_grad(set_to_none=True)
    after_start = p.detach().clone()
    for _ in range(3):
        delay.apply()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert torch.equal(p, after_start) and opt.state[p]["step"].item() == 1


def test_a_gradient_view_is_copied_before_it_is_stored():
    """DDP's bucket views / flat gradient buffers are rewritten by their owner on the next backward."""
    p = nn.Parameter(torch.zeros(3))
    flat = torch.arange(6.0)
    delay = GradientDelay([p], 1)
    p.grad = flat[:3]
    delay.apply()
    flat.zero_()
    p.grad = flat[3:]
    delay.apply()
    assert torch.equal(p.grad, torch.tensor([0.0, 1.0, 2.0]))


# --------------------------------------------------------------------------------------------------
# Faithfulness: the buffered delay is 2BW's weight stashing


def explicit_stashing_run(kind: str, d: int, data, steps: int) -> tuple[Net, torch.optim.Optimizer, list]:
    """Reference: keep every weight version, and at step t recompute the gradient at W_{t-d} on a
    scratch copy of the net (zero for t < d), then step the live net with it."""
    model, scratch = Net(), Net()
    opt = make_opt(kind, model)
    stash, losses = [], []
    for t in range(steps):
        stash.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        with torch.no_grad():
            losses.append(loss_of(model, data))
        if t >= d:
            scratch.load_state_dict(stash[t - d])
            scratch.zero_grad(set_to_none=True)
            loss_of(scratch, data).backward()
            grads = [q.grad for q in scratch.parameters()]
        else:
            grads = [torch.zeros_like(p) for p in model.parameters()]
        for p, g in zip(model.parameters(), grads):
            p.grad = g.clone()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model, opt, losses


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_buffered_delay_equals_weight_stashing_recomputation(kind, d):
    """On a deterministic full-batch problem both compute the same gradients from the same weights
    with the same kernels, so on CPU they agree bit for bit (not a tolerance: any difference would
    mean a different gradient was applied)."""
    data = problem(1)
    ref_model, ref_opt, ref_losses = explicit_stashing_run(kind, d, data, TOTAL)
    model = Net()
    opt, delay = make_opt(kind, model), GradientDelay(model.parameters(), d)
    losses = [step(model, opt, data, delay) for _ in range(TOTAL)]
    assert_same_params(ref_model, model, f"{kind} d={d}")
    assert_same_state(ref_opt, opt, f"{kind} d={d}")
    assert all(torch.equal(a, b) for a, b in zip(ref_losses, losses))
    # and the delay changed the trajectory (the test would be empty if it did not)
    sync = Net()
    sync_opt = make_opt(kind, sync)
    for _ in range(TOTAL):
        step(sync, sync_opt, data, None)
    assert not torch.equal(sync.out.weight, model.out.weight)


# --------------------------------------------------------------------------------------------------
# The scalar quadratic: f(x) = L x^2 / 2 under SGD with step size c * 2 / L.
#   synchronous: x_{t+1} = (1 - 2c) x_t, stable iff c < 1;
#   delay 1:     x_{t+1} = x_t - c' x_{t-1} with c' = 2c = lr * L: z^2 - z + c' = 0 has complex roots of
#                modulus sqrt(c') for c' > 1/4, so it is stable iff c' < 1 (c < 1/2).


def quadratic(lr: float, d: int, steps: int, L: float = 4.0) -> list[float]:
    x = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt, delay = torch.optim.SGD([x], lr=lr), GradientDelay([x], d)
    path = [x.item()]
    for _ in range(steps):
        (0.5 * L * x.pow(2)).sum().backward()
        delay.apply()
        opt.step()
        opt.zero_grad(set_to_none=True)
        path.append(x.item())
    return path


def envelope_rate(path: list[float], a: int, b: int, width: int = 25) -> float:
    """Per-step growth of max|x| between the windows starting at a and b (>= one oscillation)."""
    top = lambda s: max(abs(v) for v in path[s : s + width])  # noqa: E731
    return (top(b) / top(a)) ** (1.0 / (b - a))


def test_quadratic_at_three_quarters_of_the_sgd_limit_converges_synchronously_and_diverges_delayed():
    L, c = 4.0, 0.75
    lr = c * 2.0 / L
    sync = quadratic(lr, 0, 100, L)
    delayed = quadratic(lr, 1, 100, L)
    assert abs(sync[-1]) < 1e-25 and all(math.isclose(b, (1 - 2 * c) * a) for a, b in zip(sync, sync[1:]))
    assert abs(delayed[-1]) > 1e6
    assert envelope_rate(delayed, 5, 75) == pytest.approx(math.sqrt(2 * c), abs=0.005)


@pytest.mark.parametrize("c_prime", [0.9, 1.1])
def test_delayed_quadratic_is_stable_exactly_below_c_prime_one(c_prime):
    """Around the threshold of the delayed recursion: c' = 0.9 converges, c' = 1.1 diverges, at the
    rate sqrt(c') the roots predict, and the run follows the recursion from x_{-1} = 0 (zero start)."""
    L = 4.0
    path = quadratic(c_prime / L, 1, 300, L)
    rec = [1.0, 1.0]  # x_1 = x_0: step 0 applies the zero gradient
    while len(rec) < len(path):
        rec.append(rec[-1] - c_prime * rec[-2])
    envelope = [c_prime ** (t / 2) for t in range(len(rec))]  # |roots| = sqrt(c')
    assert all(abs(a - b) <= 1e-9 * e for a, b, e in zip(path, rec, envelope))
    if c_prime < 1:
        assert abs(path[-1]) < 1e-5
    else:
        assert abs(path[-1]) > 1e4
    assert envelope_rate(path, 50, 250) == pytest.approx(math.sqrt(c_prime), abs=0.005)
    # the synchronous run at the same step size (c = c'/2 < 1) converges either way
    assert abs(quadratic(c_prime / L, 0, 300, L)[-1]) < 1e-20


# --------------------------------------------------------------------------------------------------
# Optimizer state takes in the stale gradient


@pytest.mark.parametrize("kind", ["torch_sgd", "torch_adamw", "signum", "adamw", "muon"])
@pytest.mark.parametrize("d", [1, 2])
def test_optimizer_buffers_equal_those_fed_the_delayed_sequence(kind, d):
    """A delayed run records the fresh gradients g_t; a twin optimizer on a copy of the weights, fed
    [0] * d + [g_0, g_1, ...] by hand, ends with the same momentum / second-moment buffers."""
    data = problem(2)
    model, twin = Net(), Net()
    opt, twin_opt = make_opt(kind, model), make_opt(kind, twin)
    delay = GradientDelay(model.parameters(), d)
    fresh: list[list[torch.Tensor]] = []
    for _ in range(8):
        loss_of(model, data).backward()
        fresh.append([p.grad.clone() for p in model.parameters()])
        delay.apply()
        opt.step()
        opt.zero_grad(set_to_none=True)
    for t in range(8):
        for i, p in enumerate(twin.parameters()):
            p.grad = fresh[t - d][i].clone() if t >= d else torch.zeros_like(p)
        twin_opt.step()
        twin_opt.zero_grad(set_to_none=True)
    assert_same_state(opt, twin_opt, f"{kind} d={d}")
    assert_same_params(model, twin, f"{kind} d={d}")


def test_first_moments_hold_g0_after_step_one():
    """d = 1, after steps 0 and 1: AdamW's m = (1 - b1) g_0 and v = (1 - b2) g_0^2 with step = 2;
    SGD's momentum buffer = g_0; Signum's exp_avg = (1 - beta) g_0 (g_0: the gradient at W_0 on step
    0's batch; step 1 draws another batch, so g_1 differs from g_0 even where W_1 = W_0)."""
    batch0, batch1 = problem(3), problem(8)
    probe = Net()
    loss_of(probe, batch0).backward()
    g0 = [p.grad.clone() for p in probe.parameters()]
    for kind in ("torch_adamw", "torch_sgd", "signum"):
        model = Net()
        opt, delay = make_opt(kind, model), GradientDelay(model.parameters(), 1)
        step(model, opt, batch0, delay)
        step(model, opt, batch1, delay)
        for p, g in zip(model.parameters(), g0):
            state = opt.state[p]
            if kind == "torch_adamw":
                assert state["step"].item() == 2
                torch.testing.assert_close(state["exp_avg"], 0.1 * g, rtol=1e-6, atol=0)
                torch.testing.assert_close(state["exp_avg_sq"], 0.001 * g * g, rtol=1e-5, atol=0)
            elif kind == "torch_sgd":
                assert torch.equal(state["momentum_buffer"], g)
            else:
                torch.testing.assert_close(state["exp_avg"], 0.1 * g, rtol=1e-6, atol=0)


@pytest.mark.parametrize("d", [1, 2])
def test_adam_zero_start_shrinks_its_first_real_update_as_documented(d):
    """The start-up zeros advance Adam's bias-correction clock: the first real update is
    sqrt(1 - b2^(d+1)) / (1 - b1^(d+1)) * (1 - b1) / sqrt(1 - b2) of a unit-size step per coordinate."""
    b1, b2, lr = 0.9, 0.999, 1e-3
    p = nn.Parameter(torch.zeros(5, dtype=torch.float64))
    opt, delay = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=1e-30), GradientDelay([p], d)
    g = torch.tensor([3.0, -2.0, 0.5, -1e-3, 7.0], dtype=torch.float64)
    for _ in range(d + 1):
        p.grad = g.clone()
        delay.apply()
        opt.step()
    factor = math.sqrt(1 - b2 ** (d + 1)) / (1 - b1 ** (d + 1)) * (1 - b1) / math.sqrt(1 - b2)
    torch.testing.assert_close(p.detach(), -lr * factor * g.sign(), rtol=1e-9, atol=0)
    assert factor == pytest.approx({1: 0.7441, 2: 0.6388}[d], abs=1e-4)


# --------------------------------------------------------------------------------------------------
# Checkpoints: resume and branching carry the buffer


@pytest.mark.parametrize("save_at", [1, 5])  # inside / after the start-up zeros at d = 2
@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("kind", ["torch_adamw", "signum", "softsignum"])
def test_resumed_delayed_run_equals_the_uninterrupted_one(kind, d, save_at):
    data = problem(4)
    whole = Net()
    whole_opt, whole_delay = make_opt(kind, whole), GradientDelay(whole.parameters(), d)
    for _ in range(TOTAL):
        step(whole, whole_opt, data, whole_delay)

    model = Net()
    opt, delay = make_opt(kind, model), GradientDelay(model.parameters(), d)
    for _ in range(save_at):
        step(model, opt, data, delay)
    saved = serialised({"model": model.state_dict(), "optimizer": opt.state_dict(), "delay": delay.state_dict()})
    for _ in range(3):  # the first process goes on a little, then dies
        step(model, opt, data, delay)

    resumed = Net(seed=9)  # other initial weights: everything must come from the checkpoint
    resumed.load_state_dict(saved["model"])
    resumed_opt, resumed_delay = make_opt(kind, resumed), GradientDelay(resumed.parameters(), d)
    resumed_opt.load_state_dict(saved["optimizer"])
    resumed_delay.load_state_dict(saved["delay"])
    assert resumed_delay.steps == save_at and resumed_delay.position == save_at % d
    for _ in range(TOTAL - save_at):
        step(resumed, resumed_opt, data, resumed_delay)
    assert_same_params(whole, resumed, f"{kind} d={d} resumed at {save_at}")
    assert_same_state(whole_opt, resumed_opt, f"{kind} d={d}")
    for a, b in zip(whole_delay.buffered(), resumed_delay.buffered()):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", ["softsignum", "softmuon"])
def test_softx_branched_from_a_delayed_parent_equals_the_unbranched_delayed_run(name):
    """The SoftX protocol under delay 1: X with its delay buffer to S = alpha_sign K, then SoftX from
    that checkpoint (optimizer state + delay buffer) equals SoftX with delay 1 from scratch."""
    data, d, sign_steps = problem(5), 1, TOTAL // 2
    whole = Net()
    whole_opt, whole_delay = make_opt(name, whole), GradientDelay(whole.parameters(), d)
    for _ in range(TOTAL):
        step(whole, whole_opt, data, whole_delay)

    spec, parent_spec = REGISTRY[name], REGISTRY[REGISTRY[name].branch_from]
    shared = {k: v for k, v in spec.resolve({"alpha_sign": 0.5}).items() if k in parent_spec.defaults}
    model = Net()
    parent, parent_delay = parent_spec.build(model.roles(), shared, TOTAL), GradientDelay(model.parameters(), d)
    for _ in range(sign_steps):
        step(model, parent, data, parent_delay)
    saved = serialised({"optimizer": parent.state_dict(), "delay": parent_delay.state_dict()})
    branch, branch_delay = make_opt(name, model), GradientDelay(model.parameters(), d)
    branch.load_state_dict(saved["optimizer"])
    branch_delay.load_state_dict(saved["delay"])
    for _ in range(TOTAL - sign_steps):
        step(model, branch, data, branch_delay)
    assert_same_params(whole, model, f"{name} branched under delay {d}")


def test_state_dict_before_the_first_step_round_trips():
    p = nn.Parameter(torch.zeros(3))
    fresh = GradientDelay([p], 2)
    fresh.load_state_dict(serialised(GradientDelay([p], 2).state_dict()))
    assert fresh.steps == 0 and fresh.buffered() == [] and fresh.nbytes() == 0


def test_loading_casts_to_the_parameters_dtype_and_does_not_alias_the_state():
    src = [nn.Parameter(torch.zeros(2, dtype=torch.float64))]
    dst = [nn.Parameter(torch.zeros(2, dtype=torch.float32))]
    delay = GradientDelay(src, 1)
    src[0].grad = torch.tensor([1.5, -2.0], dtype=torch.float64)
    delay.apply()
    state = delay.state_dict()
    target = GradientDelay(dst, 1)
    target.load_state_dict(state)
    stored = target.buffered()[0][0]
    assert stored.dtype == torch.float32 and torch.equal(stored, torch.tensor([1.5, -2.0]))
    state["buffer"][0][0].zero_()
    assert torch.equal(target.buffered()[0][0], torch.tensor([1.5, -2.0]))


def _state_after_one_step(shapes, d=1):
    params = [nn.Parameter(torch.zeros(s)) for s in shapes]
    delay = GradientDelay(params, d)
    for p in params:
        p.grad = torch.ones_like(p)
    delay.apply()
    return serialised(delay.state_dict())


@pytest.mark.parametrize(
    "case, match",
    [
        ("other_delay", r"delay is 2, this run's is 1"),
        ("more_params", r"holds 3 parameters, this model has 2"),
        ("other_shape", r"parameter 1 of shape \[4\], this model's has shape \[5\]"),
        ("bad_position", r"position"),
        ("short_buffer", r"must hold 1 slot\(s\) of 2 gradient"),
        ("tensor_shape", r"delayed gradient 0 \(slot 0\)"),
        ("not_a_state", r"not a gradient-delay state"),
        ("steps_without_buffer", r"no buffer"),
    ],
)
def test_mismatched_checkpoint_is_refused_and_changes_nothing(case, match):
    target_params = [nn.Parameter(torch.zeros(2, 3)), nn.Parameter(torch.zeros(5))]
    target = GradientDelay(target_params, 1)
    state = _state_after_one_step([(2, 3), (5,)])
    if case == "other_delay":
        state = _state_after_one_step([(2, 3), (5,)], d=2)
    elif case == "more_params":
        state = _state_after_one_step([(2, 3), (5,), (1,)])
    elif case == "other_shape":
        state = _state_after_one_step([(2, 3), (4,)])
    elif case == "bad_position":
        state["position"] = 0  # steps = 1 at delay 2: the oldest gradient sits in slot 1
        state["delay"], target = 2, GradientDelay(target_params, 2)
        state["buffer"] = state["buffer"] * 2
    elif case == "short_buffer":
        state["buffer"][0] = state["buffer"][0][:1]
    elif case == "tensor_shape":
        state["buffer"][0][0] = torch.zeros(3, 2)
    elif case == "not_a_state":
        state = {"model": {}}
    elif case == "steps_without_buffer":
        state["buffer"] = None
    with pytest.raises(ValueError, match=match):
        target.load_state_dict(state)
    assert target.steps == 0 and target.buffered() == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_buffer_loads_onto_cpu_parameters_and_back():
    """A checkpoint is read onto the CPU (harness.run.checkpoint.load, map_location='cpu'); each delayed
    gradient goes to its parameter's device, both ways, and training continues there."""
    data = problem(6)
    gpu = Net().cuda()
    gpu_opt, gpu_delay = torch.optim.SGD(gpu.parameters(), lr=0.05, momentum=0.9), GradientDelay(gpu.parameters(), 2)
    cuda_data = tuple(t.cuda() for t in data)
    for _ in range(3):
        step(gpu, gpu_opt, cuda_data, gpu_delay)
    assert all(g.is_cuda for slot in gpu_delay.buffered() for g in slot)
    saved = serialised(gpu_delay.state_dict())
    cpu = Net()
    cpu_delay = GradientDelay(cpu.parameters(), 2)
    cpu_delay.load_state_dict(saved)
    assert all(g.device.type == "cpu" for slot in cpu_delay.buffered() for g in slot)
    for a, b in zip(gpu_delay.buffered(), cpu_delay.buffered()):
        assert all(torch.equal(x.cpu(), y) for x, y in zip(a, b))
    back = GradientDelay(gpu.parameters(), 2)
    back.load_state_dict(serialised(cpu_delay.state_dict()))
    assert all(g.is_cuda for slot in back.buffered() for g in slot)
    loss_of(gpu, cuda_data).backward()
    back.apply()  # the stale gradients land as .grad of CUDA parameters
    assert all(p.grad.is_cuda for p in gpu.parameters())
