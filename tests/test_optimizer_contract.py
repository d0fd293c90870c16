"""Contract tests over the whole optimizer registry: every registered optimizer builds from its
defaults, keeps its defaults inside its search space, rejects unknown and invalid hyperparameters
naming them, lowers the loss of a small model with every parameter role, round-trips its state
mid-run (for the switching optimizers also after the switch) bit for bit, never decays 1-D params,
and, when its spec names a ``branch_from`` parent, continues from the parent's checkpoint at the
switch step exactly as an unbranched run."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from optimizers import REGISTRY
from optimizers._base import ROLES

NAMES = sorted(REGISTRY)
TOTAL_STEPS = 80


class TinyNet(nn.Module):
    """Embedding + two hidden matrices + LayerNorm + head: one parameter of every common role."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(12, 6)
        self.inp = nn.Linear(6 + 5, 24)
        self.hidden = nn.Linear(24, 24)
        self.norm = nn.LayerNorm(24)
        self.head = nn.Linear(24, 1)

    def forward(self, ids, x):
        h = torch.cat([self.embed(ids), x], dim=-1)
        h = torch.relu(self.inp(h))
        h = self.norm(torch.relu(self.hidden(h)) + h)
        return self.head(h).squeeze(-1)

    def roles(self) -> dict[str, list[nn.Parameter]]:
        return {
            "embedding": [self.embed.weight],
            "matrix": [self.inp.weight, self.hidden.weight],
            "head": [self.head.weight],
            "vector": [self.inp.bias, self.hidden.bias, self.norm.weight, self.norm.bias, self.head.bias],
        }


def batches(n: int, seed: int = 0):
    """A fixed regression problem: a random teacher on (id, x), fresh batch per step, deterministic."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(12, generator=g)
    w = torch.randn(5, generator=g)
    out = []
    for _ in range(n):
        ids = torch.randint(0, 12, (64,), generator=g)
        x = torch.randn(64, 5, generator=g)
        y = table[ids] + torch.sin(x @ w) + 0.5 * x[:, 0] * x[:, 1]
        out.append((ids, x, y))
    return out


def train(model, opt, data, start: int, stop: int) -> list[float]:
    losses = []
    for ids, x, y in data[start:stop]:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(ids, x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def soft_hparams(name: str, switch_at: float) -> dict:
    """Soft optimizers switch at ``switch_at`` of the run so both phases are exercised."""
    return {"alpha_sign": switch_at} if "alpha_sign" in REGISTRY[name].defaults else {}


def save(opt) -> bytes:
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # a real serialisation: no aliasing with the live state
    return buffer.getvalue()


# --- declarations ---------------------------------------------------------------------------------


def test_registry_names_match_specs():
    assert {"adamw", "signum", "softsignum", "hardswitchsign", "muon", "softmuon", "sgd"} <= set(REGISTRY)
    for name, spec in REGISTRY.items():
        assert spec.name == name
        assert spec.implementation
        assert "lr" in spec.defaults and "weight_decay" in spec.defaults


@pytest.mark.parametrize("name", NAMES)
def test_defaults_lie_in_search_space(name):
    spec = REGISTRY[name]
    assert spec.search_space, "an optimizer must declare what Optuna tunes"
    for key, dist in spec.search_space.items():
        assert key in spec.defaults, f"search-space key {key!r} is not a hyperparameter of {name}"
        assert dist.contains(spec.defaults[key]), f"{name}: default {key}={spec.defaults[key]!r} outside {dist}"


@pytest.mark.parametrize("name", NAMES)
def test_builds_from_defaults_covering_every_parameter(name):
    model = TinyNet()
    opt = REGISTRY[name].build(model.roles(), None, TOTAL_STEPS)
    assert isinstance(opt, torch.optim.Optimizer)
    seen = [id(p) for group in opt.param_groups for p in group["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters()), "each parameter exactly once"
    assert isinstance(opt.diagnostics(), dict)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_hyperparameter_rejected_with_valid_names(name):
    spec = REGISTRY[name]
    with pytest.raises(ValueError, match="lerning_rate") as info:
        spec.build(TinyNet().roles(), {"lerning_rate": 0.1}, TOTAL_STEPS)
    assert all(key in str(info.value) for key in spec.defaults)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_role_rejected(name):
    with pytest.raises(ValueError, match="valid"):
        REGISTRY[name].build({"weights": [nn.Parameter(torch.randn(2, 2))]}, None, TOTAL_STEPS)


def invalid_values(name: str) -> list[tuple[str, object]]:
    """Per optimizer, hyperparameter values that must raise (derived from its defaults' keys)."""
    defaults = REGISTRY[name].defaults
    cases = [(key, -1e-3) for key in defaults if key == "lr" or key.endswith("_lr")]
    cases += [(key, -0.1) for key in defaults if "weight_decay" in key]
    cases += [(key, value) for key in defaults if key == "momentum" for value in (1.0, -0.1)]
    cases += [(key, value) for key in defaults if key.endswith("betas") for value in ((0.9, 1.0), (-0.1, 0.9))]
    cases += [(key, value) for key in defaults if key == "alpha_sign" for value in (1.5, -0.1)]
    return cases


@pytest.mark.parametrize(("name", "key", "value"), [(n, k, v) for n in NAMES for k, v in invalid_values(n)])
def test_invalid_hyperparameter_names_the_parameter(name, key, value):
    with pytest.raises(ValueError, match=key):
        REGISTRY[name].build(TinyNet().roles(), {key: value}, TOTAL_STEPS)


# --- behaviour ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_lowers_the_loss(name):
    model = TinyNet()
    data = batches(TOTAL_STEPS)
    opt = REGISTRY[name].build(model.roles(), soft_hparams(name, 0.5), TOTAL_STEPS)
    losses = train(model, opt, data, 0, TOTAL_STEPS)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    assert last < 0.8 * first, f"{name}: loss {first:.3f} -> {last:.3f}"
    if "alpha_sign" in REGISTRY[name].defaults:
        assert opt.diagnostics()["phase"] == 1.0, "the run must have switched to the soft phase"


@pytest.mark.parametrize("save_at", [12, 27])  # with K = 36 and alpha_sign = 0.5: before / after the switch
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_continues_bit_identically(name, save_at):
    total = 36
    data = batches(total, seed=1)
    hparams = soft_hparams(name, 0.5)
    model = TinyNet(seed=1)
    opt = REGISTRY[name].build(model.roles(), hparams, total)
    train(model, opt, data, 0, save_at)
    saved_model = copy.deepcopy(model)
    saved_opt = save(opt)
    train(model, opt, data, save_at, total + 4)  # also past K

    resumed = saved_model
    fresh = REGISTRY[name].build(resumed.roles(), hparams, total)
    fresh.load_state_dict(torch.load(io.BytesIO(saved_opt), weights_only=False))
    train(resumed, fresh, data, save_at, total + 4)

    for (pname, a), b in zip(model.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), f"{name}: {pname} differs after resuming at step {save_at}"
    for key, value in opt.state_dict()["param_groups"][0].items():
        other = fresh.state_dict()["param_groups"][0][key]
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, other), key
        else:
            assert value == other, key


BRANCHED = [name for name in NAMES if REGISTRY[name].branch_from]


def test_branch_parents_are_registered():
    assert {"softsignum": "signum", "softmuon": "muon", "hardswitchsign": "signum"}.items() <= {
        n: REGISTRY[n].branch_from for n in BRANCHED
    }.items()
    assert all(REGISTRY[name].branch_from in REGISTRY for name in BRANCHED)


@pytest.mark.parametrize("name", BRANCHED)
def test_branch_from_parent_checkpoint_continues_bit_identically(name):
    """The paper's protocol: SoftX warm-started from an X checkpoint at step S. X for S steps ->
    state_dict (serialised) -> a fresh SoftX with the same hyperparameters and K -> K - S more steps
    equals SoftX run for K steps from scratch, bit for bit on CPU (and beyond K)."""
    total, switch_at = 36, 0.5
    sign_steps = 18
    spec, parent_spec = REGISTRY[name], REGISTRY[REGISTRY[name].branch_from]
    hparams = soft_hparams(name, switch_at)
    shared = {k: v for k, v in spec.resolve(hparams).items() if k in parent_spec.defaults}
    data = batches(total + 4, seed=2)

    whole_model = TinyNet(seed=2)
    whole = spec.build(whole_model.roles(), hparams, total)
    train(whole_model, whole, data, 0, total + 4)

    model = TinyNet(seed=2)
    parent = parent_spec.build(model.roles(), shared, total)
    train(model, parent, data, 0, sign_steps)
    branch = spec.build(model.roles(), hparams, total)
    branch.load_state_dict(torch.load(io.BytesIO(save(parent)), weights_only=False))
    for group in branch.param_groups:
        if "sign_steps" in group:  # the switch bookkeeping is SoftX's own, the clock is X's
            assert group["sign_steps"] == sign_steps and group["step"] == sign_steps
    train(model, branch, data, sign_steps, total + 4)

    for (pname, a), b in zip(whole_model.named_parameters(), model.parameters()):
        assert torch.equal(a, b), f"{name}: {pname} differs from the unbranched run"
    for mine, theirs in zip(whole.state_dict()["param_groups"], branch.state_dict()["param_groups"]):
        assert set(mine) == set(theirs)
        for key, value in mine.items():
            assert torch.equal(value, theirs[key]) if isinstance(value, torch.Tensor) else value == theirs[key], key


@pytest.mark.parametrize("name", NAMES)
def test_one_dimensional_parameters_never_decay(name):
    """With zero gradients only weight decay moves parameters: matrices shrink, 1-D params stay put."""
    spec = REGISTRY[name]
    hparams = {key: 0.5 for key in spec.defaults if "weight_decay" in key}
    hparams.update({key: 0.1 for key in spec.defaults if key == "lr" or key.endswith("_lr")})
    model = TinyNet()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = spec.build(model.roles(), hparams, 10)
    for _ in range(3):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
    for n, p in model.named_parameters():
        if p.ndim == 1:
            assert torch.equal(p, before[n]), f"{name}: 1-D parameter {n} changed"
    for p, n in ((model.inp.weight, "inp.weight"), (model.hidden.weight, "hidden.weight")):
        assert p.norm() < 0.99 * before[n].norm(), f"{name}: matrix {n} was not decayed"


def test_roles_cover_the_declared_set():
    assert set(TinyNet().roles()) <= set(ROLES)
