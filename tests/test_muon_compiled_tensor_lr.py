"""A compiled Muon / SoftMuon ``step`` with tensor learning rates steps its auxiliary AdamW groups
(slow tier: ~15 s of compilation each). Under ``torch.compile`` ``step_lr`` hands the tensor lr on
(no graph break), and ``adamw_foreach`` once passed it into ``_foreach_addcdiv_``, which takes only
number step sizes (a TypeError on the first step). Found by mypy (issue 19 item 6)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import Parameter

from optimizers.muon import Muon
from optimizers.softmuon import SoftMuon


def _params(seed: int = 0) -> list[Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [Parameter(torch.randn(6, 4, generator=g)), Parameter(torch.randn(4, generator=g))]


def _make(cls, params, lr, aux_lr):
    groups = [{"params": params[:1], "use_muon": True}, {"params": params[1:], "use_muon": False}]
    extra = {"total_steps": 6, "alpha_sign": 0.5} if cls is SoftMuon else {}
    return cls(groups, lr=lr, aux_lr=aux_lr, **extra)


@pytest.mark.slow
@pytest.mark.parametrize("cls", [Muon, SoftMuon])
def test_compiled_step_with_tensor_lrs_matches_eager_float_lrs(cls):
    eager_params, compiled_params = _params(), _params()
    eager = _make(cls, eager_params, 0.02, 1e-2)
    compiled_opt = _make(cls, compiled_params, torch.tensor(0.02), torch.tensor(1e-2))
    assert torch.is_tensor(compiled_opt.param_groups[1]["lr"])  # the aux group's lr is the tensor
    step = torch.compile(compiled_opt.step)
    start = [p.detach().clone() for p in compiled_params]
    for t in range(6):
        g = torch.Generator().manual_seed(100 + t)
        for a, b in zip(eager_params, compiled_params):
            a.grad = torch.randn(a.shape, generator=g)
            b.grad = a.grad.clone()
        eager.step()
        step()
    assert not torch.equal(compiled_params[1], start[1])  # the AdamW-routed vector moved
    for a, b in zip(eager_params, compiled_params):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
