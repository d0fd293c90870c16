"""The update-rule half of pytorch's generic optimizer tests (``TestOptimRenewed``): construction
errors, "the loss goes down" (for-loop implementation, LR schedulers, param groups, tensor lrs),
complex parameters, foreach against for-loop, no-op steps. One function per upstream test, same name,
same assertions; where optbench differs the docstring says how the check was adapted."""

from __future__ import annotations

import copy
import re
import warnings

import pytest
import torch
from torch.nn import Parameter
from torch.optim.lr_scheduler import ReduceLROnPlateau

from torch_generic.common import CLIQUEY, Tracker, assert_same, build, inputs, inputs_with_impls, take_step
from torch_generic.registry import Entry, effective_weight_decay


def _step_schedulers(schedulers, loss) -> None:
    for scheduler in schedulers:
        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(loss.detach() if torch.is_tensor(loss) else loss)
        else:
            scheduler.step()


def _quadratic(optimizer, weight, bias, x):
    def closure():
        optimizer.zero_grad()
        loss = (weight.mv(x) + bias).pow(2).sum()
        loss.backward()
        return loss

    return closure


def test_optim_infos_do_not_specify_global_cliquey_kwargs(entry: Entry) -> None:
    for inp in inputs(entry):
        assert not [f for f in CLIQUEY if f in inp.kwargs], inp.desc


def test_errors(entry: Entry) -> None:
    """Upstream's cases for every optimizer (bare tensor, duplicates, a 2-element tensor lr, mixed
    named and unnamed parameters), optbench's refusals (complex parameters name the optimizer at
    construction, sparse gradients fail at the first step) and invalid hyperparameters."""
    for case in entry.errors():
        if case.on == "construct":
            if issubclass(case.error, Warning):
                with pytest.warns(case.error, match=case.match):
                    build(entry, case.params, case.kwargs)
            else:
                with pytest.raises(case.error, match=case.match):
                    build(entry, case.params, case.kwargs)
        else:
            optimizer = build(entry, case.params, case.kwargs)
            with pytest.raises(case.error, match=case.match):
                optimizer.step()


def test_forloop_goes_right_direction(entry: Entry, contiguous: bool, with_lrsched: bool) -> None:
    for schedulers_c in entry.info.scheduler_inputs if with_lrsched else [None]:
        for inp in inputs(entry):
            kwargs = inp.kwargs
            if "foreach" in entry.info.supported_impls:
                kwargs["foreach"] = False
            if contiguous:
                weight, bias = Parameter(torch.randn(10, 5)), Parameter(torch.randn(10))
            else:
                weight, bias = Parameter(torch.randn(10, 5, 2)[..., 0]), Parameter(torch.randn(10, 2)[..., 0])
            x = torch.randn(5)
            optimizer = build(entry, [weight, bias], kwargs)
            schedulers = [s(optimizer) for s in (schedulers_c or [])]
            closure = _quadratic(optimizer, weight, bias, x)
            initial = closure().item()
            for _ in range(20):
                loss = take_step(entry, optimizer, closure)
                _step_schedulers(schedulers, loss)
            assert closure().item() < initial, inp.desc


def test_param_group_with_lrscheduler_goes_right_direction(entry: Entry) -> None:
    """Upstream constructs with no keyword arguments; optbench's switching optimizers need a
    ``total_steps``: 20, so the 20 steps cross the switch (``S = 18``)."""
    required = {"total_steps": 20} if "total_steps" in entry.constructor_keys else {}
    for schedulers_c in entry.info.scheduler_inputs:
        weight, bias, x = Parameter(torch.randn(10, 5)), Parameter(torch.randn(10)), torch.randn(5)
        optimizer = build(entry, [{"params": [weight]}, {"params": [bias], "lr": 0.01}], required)
        schedulers = [s(optimizer) for s in schedulers_c]
        closure = _quadratic(optimizer, weight, bias, x)
        initial = closure().item()
        for _ in range(20):
            loss = optimizer.step(closure)
            _step_schedulers(schedulers, loss)
        assert closure().item() < initial


def test_tensor_lr(entry: Entry, num_dim: int) -> None:
    """A 1-element tensor lr (0-d, shape (1,), shape (1, 1)) gives the same steps as the float."""
    for inp in inputs_with_impls(entry, skip=("differentiable",)):
        weight, bias, x = Parameter(torch.randn(10, 5)), Parameter(torch.randn(10)), torch.randn(5)
        weight_c, bias_c = weight.detach().clone().requires_grad_(), bias.detach().clone().requires_grad_()
        kwargs = inp.kwargs
        kwargs["lr"] = 1e-3
        reference = build(entry, [weight, bias], kwargs)
        kwargs["lr"] = torch.tensor(1e-3).reshape([1] * num_dim)
        try:
            optimizer = build(entry, [weight_c, bias_c], kwargs)
        except ValueError as exc:  # torch.optim's own refusal (AdamW with foreach=True)
            assert re.search("lr as a Tensor is not supported", str(exc)), str(exc)
            continue
        for _ in range(5):
            _quadratic(reference, weight, bias, x)()
            reference.step()
            _quadratic(optimizer, weight_c, bias_c, x)()
            optimizer.step()
            assert_same(weight_c, weight, where=inp.desc)
            assert_same(bias_c, bias, where=inp.desc)


def test_complex(entry: Entry) -> None:
    """A complex parameter steps exactly as its ``view_as_real`` twin (mixed with a real one)."""
    for inp in inputs_with_impls(entry, dtype=torch.complex64, skip=("differentiable", "fused")):
        complex_params = [
            torch.randn(10, 5, dtype=torch.complex64, requires_grad=True),
            torch.randn(10, dtype=torch.complex64, requires_grad=True),
            torch.randn(10, 5, requires_grad=True),
        ]
        real_params = [
            (torch.view_as_real(p) if p.is_complex() else p).detach().clone().requires_grad_() for p in complex_params
        ]
        complex_opt = build(entry, complex_params, copy.deepcopy(inp.kwargs))
        real_opt = build(entry, real_params, inp.kwargs)
        for _ in range(3):
            for c, r in zip(complex_params, real_params):
                r.grad = torch.randn_like(r)
                c.grad = torch.view_as_complex(r.grad) if c.is_complex() else r.grad.clone()
            real_opt.step()
            complex_opt.step()
            as_real = [torch.view_as_real(p) if p.is_complex() else p for p in complex_params]
            assert_same(
                [p.detach() for p in as_real], [p.detach() for p in real_params], rtol=0, atol=0, where=inp.desc
            )


def _rosenbrock(t):
    x, y = t
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def test_complex_2d(entry: Entry) -> None:
    """A complex pair on |rosenbrock| steps as its real and imaginary parts as two real parameters."""
    for inp in inputs_with_impls(entry, dtype=torch.complex64, skip=("differentiable", "fused")):
        a = torch.randn(2, dtype=torch.complex64, requires_grad=True)
        re_, im = a.real.detach().clone().requires_grad_(), a.imag.detach().clone().requires_grad_()
        opt_c = build(entry, [a], copy.deepcopy(inp.kwargs))
        opt_r = build(entry, [re_, im], inp.kwargs)
        for _ in range(3):
            opt_c.zero_grad()
            opt_r.zero_grad()
            _rosenbrock(a).abs().backward()
            _rosenbrock(torch.complex(re_, im)).abs().backward()
            assert_same(re_.grad, a.grad.real, where=inp.desc)
            assert_same(im.grad, a.grad.imag, where=inp.desc)
            opt_c.step()
            opt_r.step()
            assert_same(re_.detach(), a.real.detach(), where=inp.desc)
            assert_same(im.detach(), a.imag.detach(), where=inp.desc)


def _small_model(dtype: torch.dtype):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 1), torch.nn.Sigmoid())
    return model.to(dtype=dtype)


def _compare_runs(entry: Entry, dtype: torch.dtype, flag: str, tolerances: dict, step_dtype=None) -> None:
    """The flag off and on, 7 steps on a small model plus a 0-d parameter; step 3 without
    gradients; the second Linear frozen for steps 4 and 5. Parameters and per-parameter state
    must agree after every step."""
    for inp in inputs(entry, dtype):
        models, optimizers = [], []
        for value in (False, True):
            kwargs = copy.deepcopy(inp.kwargs)
            kwargs[flag] = value
            model = _small_model(dtype)
            scalar = torch.empty((), dtype=dtype, requires_grad=True)
            scalar.grad = torch.rand_like(scalar)
            models.append(model)
            optimizers.append(build(entry, [*model.parameters(), scalar], kwargs))
        x = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=dtype).reshape(3, 2)
        tracker = Tracker(**tolerances)
        for i in range(7):
            for model, optimizer in zip(models, optimizers):
                optimizer.zero_grad()
                model[2].requires_grad_(i not in (3, 4))
                if i != 2:
                    model(x).sum().backward()
                optimizer.step()
            (ref_model, model), (ref_opt, opt) = models, optimizers
            for k, (p_ref, p) in enumerate(zip(ref_model.parameters(), model.parameters())):
                tracker.add(p_ref)
                tracker.check_and_align(p, f"{inp.desc}: step {i + 1}, parameter {k}")
                for key, value in ref_opt.state[p_ref].items():
                    if step_dtype is not None and key == "step" and torch.is_tensor(value):
                        assert value.dtype == opt.state[p][key].dtype == step_dtype
                    if torch.is_tensor(value):
                        tracker.add(value)
                        tracker.check_and_align(opt.state[p][key], f"{inp.desc}: step {i + 1}, state {key}")
                    else:
                        assert value == opt.state[p][key]
        assert tracker.all_checked()


def test_foreach_matches_forloop(entry: Entry) -> None:
    _compare_runs(entry, torch.float64, "foreach", {})


def test_set_default_dtype_works_with_foreach(entry: Entry) -> None:
    """Upstream runs it on CUDA only; nothing in it is CUDA-specific, so here it runs on the CPU:
    foreach against for-loop with the default dtype set to float64, then float16 (reduced
    tolerance); tensor step counters stay float32 unless the default is float64."""
    old = torch.get_default_dtype()
    try:
        for default in (torch.float64, torch.float16):
            torch.set_default_dtype(default)
            tolerances = {"atol": 1e-5, "rtol": 1e-4} if default == torch.float16 else {}
            _compare_runs(
                entry,
                torch.float64,
                "foreach",
                tolerances,
                step_dtype=torch.float64 if default == torch.float64 else torch.float32,
            )
    finally:
        torch.set_default_dtype(old)


def test_mixed_device_dtype(entry: Entry) -> None:
    """Upstream: parameters of four dtypes on two GPUs (multi-GPU only). Adapted to one device:
    float64, float32, float16 and bfloat16 parameters (and an int64 one without gradient) in one
    group, foreach against for-loop for 7 steps, 5x each dtype's default tolerance."""
    dtypes = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
    params = [torch.rand(2, 3, dtype=d, requires_grad=True) for d in dtypes for _ in range(2)]
    for p in params:
        p.grad = torch.rand_like(p)
    for inp in inputs(entry):
        runs = []
        for value in (False, True):
            clones = [p.detach().clone().requires_grad_() for p in params]
            for c, p in zip(clones, params):
                c.grad = p.grad.detach().clone()
            optimizer = build(
                entry, [*clones, torch.randint(1024, (2, 3))], {**copy.deepcopy(inp.kwargs), "foreach": value}
            )
            for _ in range(7):
                optimizer.step()
            runs.append((clones, optimizer))
        (ref, ref_opt), (new, new_opt) = runs
        for p_ref, p in zip(ref, new):
            rtol, atol = (5 * t for t in torch.testing._comparison.get_tolerances(p.dtype, rtol=None, atol=None))
            assert_same(p, p_ref, rtol=rtol, atol=atol, where=f"{inp.desc}: {p.dtype} parameter")
            for key, value in ref_opt.state[p_ref].items():
                assert_same(new_opt.state[p][key], value, rtol=rtol, atol=atol, where=f"{inp.desc}: state {key}")


def test_defaults_changed_to_foreach(entry: Entry) -> None:
    """Upstream (CUDA) mocks torch's private multi-tensor function to see it called by default.
    Adapted: an optimizer built without ``foreach`` runs the foreach path (its groups say
    ``foreach=True``) and steps exactly as one built with ``foreach=True``."""
    for inp in inputs(entry):
        if torch.is_tensor(inp.kwargs.get("lr")):
            continue  # torch's AdamW: a tensor lr and foreach=True exclude each other
        steps = []
        for kwargs in (copy.deepcopy(inp.kwargs), {**copy.deepcopy(inp.kwargs), "foreach": True}):
            torch.manual_seed(0)
            model = torch.nn.Linear(5, 5)
            optimizer = build(entry, model.parameters(), kwargs)
            assert all(g["foreach"] is True for g in optimizer.param_groups), inp.desc
            model(torch.rand(2, 5)).sum().backward()
            optimizer.step()
            steps.append([p.detach().clone() for p in model.parameters()])
        assert_same(steps[0], steps[1], rtol=0, atol=0, where=inp.desc)


def _split_constructor_keys(entry: Entry, kwargs: dict) -> dict:
    """Pop the run-wide keys (``Entry.constructor_keys``) off an input's kwargs: they go to the
    constructor, not into one param group."""
    return {k: kwargs.pop(k) for k in entry.constructor_keys if k in kwargs}


def test_param_groups_weight_decay(entry: Entry) -> None:
    for inp in inputs_with_impls(entry, skip=("differentiable",)):
        weight_kwargs = inp.kwargs
        outer = _split_constructor_keys(entry, weight_kwargs)
        bias_kwargs = {**copy.deepcopy(weight_kwargs), "weight_decay": 0.0}
        weight, bias, x = Parameter(torch.randn(10, 5)), Parameter(torch.randn(10)), torch.randn(5)
        optimizer = build(entry, [dict(params=[weight], **weight_kwargs), dict(params=[bias], **bias_kwargs)], outer)
        initial = (weight.mv(x) + bias).pow(2).sum().item()
        for _ in range(20):
            loss = _quadratic(optimizer, weight, bias, x)()
            optimizer.step()
        assert loss.item() < initial, inp.desc


def test_param_groups_lr(entry: Entry) -> None:
    """A group given its own lr trains; a group left at the constructor's lr of 1e-28 does not move."""
    for inp in inputs_with_impls(entry, skip=("differentiable",)):
        kwargs = inp.kwargs
        outer = {**_split_constructor_keys(entry, kwargs), "lr": 1e-28}
        if "lr" not in kwargs or (not torch.is_tensor(kwargs["lr"]) and kwargs["lr"] == 0):
            kwargs["lr"] = 1e-3
        weight, bias, x = Parameter(torch.randn(10, 5)), Parameter(torch.randn(10)), torch.randn(5)
        irrelevant = Parameter(torch.randn(2))
        before = irrelevant.detach().clone()
        optimizer = build(entry, [dict(params=[weight, bias], **kwargs), dict(params=[irrelevant])], outer)
        initial = (weight.mv(x) + bias).pow(2).sum().item()
        for _ in range(20):
            loss = _quadratic(optimizer, weight, bias, x)()
            irrelevant.grad = torch.rand_like(irrelevant)
            optimizer.step()
        assert loss.item() < initial, inp.desc
        assert_same(irrelevant.detach(), before, where=inp.desc)


def test_step_is_noop_when_params_have_no_grad(entry: Entry) -> None:
    params = [torch.randn(2, 3, requires_grad=False) for _ in range(2)]
    before = [p.clone() for p in params]
    for inp in inputs_with_impls(entry):
        build(entry, params, inp.kwargs).step(lambda: torch.tensor([1.0]))
    assert_same(params, before, rtol=0, atol=0)


def test_step_is_noop_for_zero_grads(entry: Entry) -> None:
    """Upstream skips inputs with a non-zero ``weight_decay`` (parameters decay without gradients);
    optbench's default weight decay is not 0 (by design), so inputs that name none are skipped too."""
    param = torch.randn(5, 1, requires_grad=True)
    before = param.detach().clone()
    ran = 0
    for inp in inputs_with_impls(entry):
        kwargs = inp.kwargs
        if effective_weight_decay(entry, kwargs) != 0:
            continue
        if entry.name == "AdamW":  # as upstream: AdamW moves a little regardless, so a small lr
            kwargs["lr"] = torch.tensor(1e-5) if torch.is_tensor(kwargs.get("lr")) else 1e-5
        optimizer = build(entry, [param], kwargs)
        param.grad = torch.zeros_like(param)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            optimizer.step(lambda: torch.tensor([1.0]))
        assert_same(param.detach(), before, where=inp.desc)
        ran += 1
    assert ran, f"{entry.name}: no input without weight decay"
