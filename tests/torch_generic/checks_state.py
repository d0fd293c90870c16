"""The object half of pytorch's generic optimizer tests (``TestOptimRenewed``): printing, state_dict
save / load (deterministic continuation, older and named state dicts, ``weights_only`` loads,
non-tensor step counters), the six state-dict hooks, the step hooks (local and global, in order),
deepcopy and non-empty state. One function per upstream test, same name, same assertions."""

from __future__ import annotations

import copy
import functools
import tempfile

import torch
from torch.nn import Parameter
from torch.optim import SGD
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from torch_generic.common import (
    assert_same,
    build,
    inputs,
    inputs_with_impls,
    named,
    take_step,
    without_param_names,
)
from torch_generic.registry import Entry


def _fwd_bwd(optimizer, weight, bias, x):
    optimizer.zero_grad()
    loss = (weight.mv(x) + bias).pow(2).sum()
    loss.backward()
    return loss


def test_optimizer_can_be_printed(entry: Entry) -> None:
    params = [Parameter(torch.randn(2, 3)) for _ in range(2)]
    for inp in inputs_with_impls(entry):
        text = repr(build(entry, params, inp.kwargs))
        assert text.startswith(entry.info.optim_cls.__name__) and "Parameter Group 0" in text


def test_state_dict_deterministic(entry: Entry, is_named_optim0: bool, is_named_optim1: bool) -> None:
    """10 steps, a state_dict into a fresh optimizer on equal (not identical) parameters, 10 more
    steps of both in lockstep: equal parameters, equal state dicts, repeated groups packed equally."""
    weight, bias, x = Parameter(torch.randn(2, 3)), Parameter(torch.randn(2)), torch.randn(3)
    for inp in inputs_with_impls(entry, skip=("differentiable",)):
        optimizer = build(entry, named([weight, bias], is_named_optim0), copy.deepcopy(inp.kwargs))
        closure = functools.partial(_fwd_bwd, optimizer, weight, bias, x)
        for _ in range(10):
            take_step(entry, optimizer, closure)
        with torch.no_grad():
            weight_c, bias_c = Parameter(weight.clone()), Parameter(bias.clone())
        optimizer_c = build(entry, named([weight_c, bias_c], is_named_optim1), copy.deepcopy(inp.kwargs))
        closure_c = functools.partial(_fwd_bwd, optimizer_c, weight_c, bias_c, x)
        optimizer_c.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        for i in range(10):
            take_step(entry, optimizer, closure)
            take_step(entry, optimizer_c, closure_c)
            assert_same(weight_c, weight, where=f"{inp.desc}: step {11 + i}")
            assert_same(bias_c, bias, where=f"{inp.desc}: step {11 + i}")
        assert_same(
            without_param_names(optimizer_c.state_dict()), without_param_names(optimizer.state_dict()), where=inp.desc
        )
        optimizer_c.param_groups.extend(optimizer_c.param_groups)
        assert_same(
            without_param_names(optimizer_c.state_dict())["param_groups"][-1],
            without_param_names(optimizer.state_dict())["param_groups"][-1],
            where=inp.desc,
        )


def _conv_bn(dtype=torch.float32):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 2, 1, stride=2), torch.nn.BatchNorm2d(2, eps=1e-05, momentum=0.1))
    return model.to(dtype=dtype), torch.rand(1, 4, 16, 16, dtype=dtype)


def _model_step(entry, optimizer, model, x):
    def closure():
        optimizer.zero_grad()
        loss = model(x).sum()
        loss.backward()
        return loss

    take_step(entry, optimizer, closure)


def test_can_load_older_state_dict(entry: Entry) -> None:
    """A state dict without the group keys later versions added (``not_og_supported_flags``:
    torch's flags; optbench's Signum ``step``, SoftSignum ``schedule_scope``, Muon ``shape_scale``
    and ``ns_dtype``, ...) loads, and the optimizer steps on."""
    for inp in inputs_with_impls(entry, skip=("differentiable",)):
        model, x = _conv_bn()
        optimizer = build(entry, model.parameters(), inp.kwargs)
        for _ in range(3):
            _model_step(entry, optimizer, model, x)
        old = copy.deepcopy(optimizer.state_dict())
        for group in old["param_groups"]:
            for flag in entry.info.not_og_supported_flags:
                group.pop(flag, None)
        optimizer.load_state_dict(old)
        before = [p.detach().clone() for p in model.parameters()]
        _model_step(entry, optimizer, model, x)
        assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), inp.desc


def test_can_load_from_to_named_state_dict(entry: Entry, is_named_optim0: bool, is_named_optim1: bool) -> None:
    """Upstream checks ``param_names`` of group 0; Muon-family optimizers split a plain group into a
    Muon group (matrices) and an AdamW group (the rest), so the names are checked over all groups,
    in order."""
    for inp in inputs_with_impls(entry, skip=("differentiable",)):
        model, x = _conv_bn()
        optimizer = build(
            entry, model.named_parameters() if is_named_optim0 else model.parameters(), copy.deepcopy(inp.kwargs)
        )
        for _ in range(3):
            _model_step(entry, optimizer, model, x)
        saved = copy.deepcopy(optimizer.state_dict())
        optimizer2 = build(
            entry, model.named_parameters() if is_named_optim1 else model.parameters(), copy.deepcopy(inp.kwargs)
        )
        optimizer2.load_state_dict(saved)
        _model_step(entry, optimizer2, model, x)
        if is_named_optim0 or is_named_optim1:
            names = [n for g in optimizer2.state_dict()["param_groups"] for n in g["param_names"]]
            assert sorted(names) == ["0.bias", "0.weight", "1.bias", "1.weight"], (inp.desc, names)
            by_group = [g["param_names"] for g in optimizer2.param_groups]
            expected = [
                [n for n, p in model.named_parameters() if any(p is q for q in g["params"])]
                for g in optimizer2.param_groups
            ]
            assert by_group == expected, inp.desc


def test_save_load_equality_with_weights_only(entry: Entry, is_named_optim: bool) -> None:
    weight, bias, x = Parameter(torch.randn(2, 3)), Parameter(torch.randn(2)), torch.randn(3)
    for inp in inputs_with_impls(entry, skip=("differentiable",)):
        optimizer = build(entry, named([weight, bias], is_named_optim), inp.kwargs)
        closure = functools.partial(_fwd_bwd, optimizer, weight, bias, x)
        for _ in range(3):
            optimizer.step(closure)
        state = optimizer.state_dict()
        with tempfile.TemporaryFile() as f:
            torch.save(state, f)
            f.seek(0)
            assert_same(torch.load(f, weights_only=False), state, rtol=0, atol=0, where=inp.desc)
            f.seek(0)
            assert_same(torch.load(f, weights_only=True), state, rtol=0, atol=0, where=inp.desc)


def test_load_nontensor_step(entry: Entry) -> None:
    params = [Parameter(torch.randn(2, 3)) for _ in range(2)] + [Parameter(torch.randn(3))]
    for p in params:
        p.grad = torch.rand_like(p)
    for inp in inputs_with_impls(entry, skip=("differentiable",)):
        optimizer = build(entry, params, inp.kwargs)
        for _ in range(3):
            optimizer.step()
        state = copy.deepcopy(optimizer.state_dict())
        for p_state in state["state"].values():
            if torch.is_tensor(p_state.get("step")):
                p_state["step"] = p_state["step"].item()
        optimizer.load_state_dict(state)
        optimizer.step()


def _state_dict_pre_hook(optimizer) -> None:
    optimizer.state["test"] = 1


def _state_dict_post_hook(optimizer, state_dict):
    if "test" in state_dict["state"]:
        state_dict["state"].pop("test")
        state_dict["ran_state_dict_pre_hook"] = True
    else:
        state_dict["ran_state_dict_pre_hook"] = False
    return state_dict


def _load_pre_hook1(optimizer, state_dict) -> None:
    state_dict["param_groups"][0]["lr"] = 0.002


def _load_pre_hook2(optimizer, state_dict):
    mine = copy.deepcopy(state_dict)
    mine["param_groups"][0]["lr"] = 0.003
    return mine


def _load_post_hook(optimizer) -> None:
    optimizer.state["ran_load_state_dict_pre_hook2"] = optimizer.param_groups[0]["lr"] == 0.003
    optimizer.state["ran_load_state_dict_post_hook"] = True


def _one_param_optimizers(entry: Entry):
    for inp in inputs_with_impls(entry):
        yield build(entry, [torch.rand(2, 3, requires_grad=True)], inp.kwargs)


def test_state_dict_pre_hook(entry: Entry) -> None:
    for optimizer in _one_param_optimizers(entry):
        optimizer.register_state_dict_pre_hook(_state_dict_pre_hook)
        assert optimizer.state_dict()["state"]["test"] == 1


def test_state_dict_post_hook(entry: Entry) -> None:
    for optimizer in _one_param_optimizers(entry):
        optimizer.register_state_dict_post_hook(_state_dict_post_hook)
        assert optimizer.state_dict()["ran_state_dict_pre_hook"] is False


def test_state_dict_pre_post_hook(entry: Entry) -> None:
    for optimizer in _one_param_optimizers(entry):
        optimizer.register_state_dict_pre_hook(_state_dict_pre_hook)
        optimizer.register_state_dict_post_hook(_state_dict_post_hook)
        state = optimizer.state_dict()
        assert "test" not in state["state"] and state["ran_state_dict_pre_hook"] is True


def test_load_state_dict_pre_hook_and_prepend(entry: Entry) -> None:
    for optimizer in _one_param_optimizers(entry):
        state = optimizer.state_dict()
        optimizer.register_load_state_dict_pre_hook(_load_pre_hook1)
        optimizer.load_state_dict(state)
        assert optimizer.param_groups[0]["lr"] == 0.002
        optimizer.register_load_state_dict_pre_hook(_load_pre_hook2, prepend=True)
        optimizer.load_state_dict(state)
        assert optimizer.param_groups[0]["lr"] == 0.002  # hook1 ran after the prepended hook2


def test_load_state_dict_post_hook(entry: Entry) -> None:
    for optimizer in _one_param_optimizers(entry):
        optimizer.register_load_state_dict_post_hook(_load_post_hook)
        optimizer.load_state_dict(optimizer.state_dict())
        assert not optimizer.state["ran_load_state_dict_pre_hook2"]
        assert optimizer.state["ran_load_state_dict_post_hook"] is True


def test_load_state_dict_pre_post_hook(entry: Entry) -> None:
    for optimizer in _one_param_optimizers(entry):
        optimizer.register_load_state_dict_pre_hook(_load_pre_hook2)
        optimizer.register_load_state_dict_post_hook(_load_post_hook)
        optimizer.load_state_dict(optimizer.state_dict())
        assert optimizer.state["ran_load_state_dict_pre_hook2"]
        assert optimizer.state["ran_load_state_dict_post_hook"] is True


def _hook_params():
    return [torch.tensor([1.0, 1.0])]


def test_step_post_hook(entry: Entry) -> None:
    params = _hook_params()
    for inp in inputs_with_impls(entry):
        optimizer = build(entry, params, inp.kwargs)
        calls = []
        handle = optimizer.register_step_post_hook(lambda opt, args, kwargs, calls=calls: calls.append(opt))
        optimizer.step()
        optimizer.step()
        assert len(calls) == 2 and all(c is optimizer for c in calls)
        handle.remove()
        optimizer.step()
        assert len(calls) == 2


def test_step_pre_hook(entry: Entry) -> None:
    params = _hook_params()
    for inp in inputs_with_impls(entry):
        optimizer = build(entry, params, inp.kwargs)
        calls = []
        handle = optimizer.register_step_pre_hook(lambda opt, args, kwargs, calls=calls: calls.append(opt))
        optimizer.step()
        optimizer.step()
        assert len(calls) == 2 and all(c is optimizer for c in calls)
        handle.remove()
        optimizer.step()
        assert len(calls) == 2


def test_step_all_hooks(entry: Entry) -> None:
    """Global pre, local pre, local post, global post, once per step of each optimizer (a routed
    optimizer's inner parts must not fire the global hooks again)."""
    params = _hook_params()
    for inp in inputs_with_impls(entry):
        optimizer, other = build(entry, params, inp.kwargs), SGD(params)
        data: list[int] = []

        def mark(value, data=data):
            return lambda *args: data.append(value)

        handles = [register_optimizer_step_pre_hook(mark(0)), register_optimizer_step_post_hook(mark(5))]
        try:
            for opt in (optimizer, other):
                handles.append(opt.register_step_pre_hook(mark(1)))
                handles.append(opt.register_step_post_hook(mark(2)))
            optimizer.step()
            assert data == [0, 1, 2, 5], inp.desc
            other.step()
            optimizer.step()
            assert data == [0, 1, 2, 5] * 3, inp.desc
        finally:
            for handle in handles:
                handle.remove()
        optimizer.step()
        other.step()
        assert data == [0, 1, 2, 5] * 3, inp.desc


def test_deepcopy_copies_all_public_attrs(entry: Entry) -> None:
    params = [Parameter(torch.randn(2, 3)) for _ in range(2)]
    for p in params:
        p.grad = torch.rand_like(p)
    for inp in inputs_with_impls(entry, skip=("differentiable",)):
        optimizer = build(entry, params, inp.kwargs)
        for _ in range(3):
            optimizer.step()
        public = {k for k in vars(optimizer) if not k.startswith("_")}
        assert public == {k for k in vars(copy.deepcopy(optimizer)) if not k.startswith("_")}, inp.desc


def test_non_empty_state(entry: Entry) -> None:
    for inp in inputs(entry):
        model = torch.nn.Linear(5, 5)
        optimizer = build(entry, model.parameters(), inp.kwargs)
        optimizer.zero_grad()
        model(torch.rand(2, 5)).sum().backward()
        optimizer.step()
        assert optimizer.state and all(len(s) > 0 for s in optimizer.state.values()), inp.desc
