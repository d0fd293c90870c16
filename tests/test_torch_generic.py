"""PyTorch's generic optimizer tests over every optbench optimizer.

pytorch's ``test/test_optim.py`` (``TestOptimRenewed``) runs one set of tests over the
``OptimizerInfo`` records of ``torch.testing._internal.common_optimizers``. Here every optbench
optimizer has such a record (``tests/torch_generic/registry.py``: AdamW, Signum, SGD, SoftSignum,
HardSwitchSign, Muon, SoftMuon, and a routed plugin, with budgets that cross the switch) and every
upstream test that can run on a CPU has an optbench implementation of the same name
(``tests/torch_generic/checks_*.py``). Test ids read ``test_generic[<upstream test>-<optimizer>-...]``.

Upstream tests not run here are in ``LEFT_OUT`` with the reason; what optbench does differently by
design is skipped per optimizer with the reason (``Entry.by_design``) and listed in
docs/optimizers-as-library.md.
"""

from __future__ import annotations

import pytest
import torch
from torch_generic import checks_core, checks_state
from torch_generic.registry import ENTRIES

# Every test of TestOptimRenewed (pytorch test/test_optim.py, torch 2.6 .. 2.9 layout) is either
# implemented (CHECKS) or left out here with the reason.
LEFT_OUT = {
    "test_forloop_goes_right_direction_multigpu": "needs two CUDA devices",
    "test_rosenbrock_sparse": "no optbench optimizer takes sparse gradients (supports_sparse=False, as most "
    "torch.optim optimizers); a sparse gradient is refused at step(), see test_errors",
    "test_state_dict_with_cuda_params": "needs CUDA (CPU state_dict round trips: test_state_dict_deterministic)",
    "test_foreach_large_tensor": "needs CUDA and 72 GB",
    "test_peak_memory_foreach": "measures the CUDA caching allocator's peak",
    "test_fused_matches_forloop": "no optbench optimizer has a fused implementation",
    "test_fused_error_on_params_on_meta": "no fused implementation",
    "test_fused_large_tensor": "no fused implementation",
    "test_fused_does_not_step_if_foundinf": "no fused implementation",
    "test_fused_cpu_matches_cuda": "no fused implementation",
    "test_cpu_load_state_dict": "only for fused or capturable implementations, neither of which optbench has",
    "test_second_order_optims_return_consistent_types": "only for optimizers whose step requires a closure (LBFGS)",
    "test_adamw_serialization": "about the torch.optim.AdamW class itself, not OptimizerInfo-driven",
}

CHECKS = {
    name: getattr(module, name)
    for module in (checks_core, checks_state)
    for name in dir(module)
    if name.startswith("test_")
}

# Upstream's @parametrize axes.
AXES = {
    "test_forloop_goes_right_direction": [
        {"contiguous": c, "with_lrsched": s} for c in (True, False) for s in (True, False)
    ],
    "test_tensor_lr": [{"num_dim": n} for n in (0, 1, 2)],
    "test_state_dict_deterministic": [
        {"is_named_optim0": a, "is_named_optim1": b} for a in (True, False) for b in (True, False)
    ],
    "test_can_load_from_to_named_state_dict": [
        {"is_named_optim0": a, "is_named_optim1": b} for a in (True, False) for b in (True, False)
    ],
    "test_save_load_equality_with_weights_only": [{"is_named_optim": a} for a in (True, False)],
}

# Upstream's @optims filters: which optimizers a test applies to.
APPLIES = {
    "test_complex": lambda info: info.supports_complex,
    "test_complex_2d": lambda info: info.supports_complex,
    "test_foreach_matches_forloop": lambda info: "foreach" in info.supported_impls,
    "test_set_default_dtype_works_with_foreach": lambda info: "foreach" in info.supported_impls,
    "test_mixed_device_dtype": lambda info: "foreach" in info.supported_impls,
    "test_defaults_changed_to_foreach": lambda info: "foreach" in info.supported_impls,
}


def _cases():
    for test in sorted(CHECKS):
        for name, entry in ENTRIES.items():
            if not APPLIES.get(test, lambda info: True)(entry.info):
                continue
            for axes in AXES.get(test, [{}]):
                suffix = "".join(f"-{k}={v}" for k, v in axes.items())
                yield pytest.param(test, name, axes, id=f"{test}-{name}{suffix}")


@pytest.mark.parametrize(("test", "name", "axes"), list(_cases()))
def test_generic(test, name, axes):
    entry = ENTRIES[name]
    if test in entry.by_design:
        pytest.skip(entry.by_design[test])
    torch.manual_seed(0)
    CHECKS[test](entry, **axes)


def test_every_upstream_test_is_run_or_left_out_with_a_reason():
    upstream = {
        "test_optim_infos_do_not_specify_global_cliquey_kwargs",
        "test_errors",
        "test_forloop_goes_right_direction",
        "test_forloop_goes_right_direction_multigpu",
        "test_param_group_with_lrscheduler_goes_right_direction",
        "test_tensor_lr",
        "test_rosenbrock_sparse",
        "test_complex",
        "test_complex_2d",
        "test_foreach_matches_forloop",
        "test_mixed_device_dtype",
        "test_set_default_dtype_works_with_foreach",
        "test_foreach_large_tensor",
        "test_peak_memory_foreach",
        "test_fused_matches_forloop",
        "test_fused_error_on_params_on_meta",
        "test_fused_large_tensor",
        "test_fused_does_not_step_if_foundinf",
        "test_cpu_load_state_dict",
        "test_param_groups_weight_decay",
        "test_param_groups_lr",
        "test_step_is_noop_when_params_have_no_grad",
        "test_step_is_noop_for_zero_grads",
        "test_optimizer_can_be_printed",
        "test_state_dict_deterministic",
        "test_can_load_older_state_dict",
        "test_can_load_from_to_named_state_dict",
        "test_save_load_equality_with_weights_only",
        "test_load_nontensor_step",
        "test_state_dict_with_cuda_params",
        "test_state_dict_pre_hook",
        "test_state_dict_post_hook",
        "test_state_dict_pre_post_hook",
        "test_load_state_dict_pre_hook_and_prepend",
        "test_load_state_dict_post_hook",
        "test_load_state_dict_pre_post_hook",
        "test_step_post_hook",
        "test_step_pre_hook",
        "test_step_all_hooks",
        "test_deepcopy_copies_all_public_attrs",
        "test_second_order_optims_return_consistent_types",
        "test_fused_cpu_matches_cuda",
        "test_defaults_changed_to_foreach",
        "test_non_empty_state",
        "test_adamw_serialization",
    }
    assert not set(CHECKS) & set(LEFT_OUT)
    assert set(CHECKS) | set(LEFT_OUT) == upstream
    assert all(LEFT_OUT.values())


def test_every_optbench_optimizer_is_registered():
    from optimizers import REGISTRY

    classes = {
        type(spec.build({"matrix": [torch.nn.Parameter(torch.randn(3, 3))]}, None, 10)).__name__
        for spec in REGISTRY.values()
    }
    assert classes <= set(ENTRIES), classes - set(ENTRIES)
    assert "RoutedLion" in ENTRIES and isinstance(
        ENTRIES["RoutedLion"].info.optim_cls([torch.zeros(2, 2)]), torch.optim.Optimizer
    )
