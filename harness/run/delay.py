"""Delayed gradients: every optimizer step applies the gradient computed ``d`` steps earlier.

The condition of "One-Step Gradient Delay is Not a Barrier for Large-Scale Asynchronous Pipeline
Parallel LLM Pretraining" (Zmushko, Petrov, Abdullaev, Khrushchev, Horvath; arXiv 2606.30634, 2026),
which studies optimizers under the PipeDream-2BW schedule (Narayanan et al., "Memory-Efficient
Pipeline-Parallel DNN Training", ICML 2021, arXiv 2006.09503). 2BW keeps two weight versions so that
every update uses a gradient exactly one step stale, for every stage, whatever the pipeline depth::

    W_{t+1} = W_t - lr_t * U_t( g(W_{t-1}) )          (d = 1; U_t: the optimizer's update rule)

Here the staleness is injected in software, without a pipeline: :class:`GradientDelay` keeps a
first-in-first-out ring of the last ``d`` gradients per parameter and, between backward and
``optimizer.step()``, swaps each parameter's ``.grad`` with the one from ``d`` steps earlier. The
optimizer then takes the stale gradient into everything it keeps (momentum, second moments, the
SoftX temperature statistics) exactly as it would a fresh one. Since the gradient of step ``t`` was
computed at the weights of step ``t``, the buffered delay equals recomputing the gradient at the
stashed weights ``W_{t-d}`` (2BW's weight stashing); ``tests/test_delay.py`` checks it bit for bit.

Conventions (each one tested):

* **Step indices.** Steps are 0-based: step ``t`` computes ``g_t`` at ``W_t`` and applies
  ``g_{t-d}``. With ``d = 1`` the first step (``t = 0``) applies zero and the second (``t = 1``)
  applies ``g_0``.
* **The first d steps apply a zero gradient** (``g_t = 0`` for ``t < 0``), they are not skipped: the
  optimizer's step counters, the loop's LR schedule and weight decay advance as in the synchronous
  run, so step ``t`` is step ``t`` for every schedule (the LR warmup, SoftSignum's switch at
  ``floor(alpha_sign K)``) and the run still takes its K steps. What a zero gradient does depends on
  the optimizer, which is part of the condition being measured:

  - SGD (heavy ball, ``m <- beta m + g``) and Signum / Muon (sign / orthogonalisation of the
    momentum): ``m`` stays 0, the update is 0 (``sign(0) = 0``, Newton-Schulz of 0 is 0), only
    decoupled weight decay shrinks the weights (with weight decay 0, no registered optimizer moves a
    weight during the start-up zeros: tested). From the first real gradient on, ``m`` equals what
    a skipped start would give, since momentum started from zero either way.
  - Adam(W): ``m`` and ``v`` stay 0 and the update is 0, but the bias-correction clock advances: the
    first real gradient is corrected as the ``(d+1)``-th step, so (per coordinate, eps aside) the
    first update is ``sqrt(1 - b2^(d+1)) / (1 - b1^(d+1)) * (1 - b1) / sqrt(1 - b2)`` times the skip's
    (0.74 at d = 1 with betas (0.9, 0.999), 0.64 at d = 2) and the later ones converge to it.

  This matches marin's reference wrapper (marin-community/marin,
  ``experiments/grug/moe_delay/delay_optim.py``): its FIFO starts as zeros inside the optax state,
  so the inner optimizer receives zero gradients for its first ``tau`` updates. Ours differs in
  form, not meaning: a torch object beside the optimizer instead of an optax state (its
  ``state_dict`` goes into the checkpoint next to the optimizer's), a ring position instead of
  shifting a tuple, uniform delay only (marin also has per-stage delays and stale-gradient
  correctors: DC-ASGD, weight prediction).
* **A parameter without a gradient** (``.grad is None``: unused in that step's graph) stays without
  one, ``d`` steps later: step ``t`` gives the optimizer exactly what step ``t - d``'s backward left,
  and optimizers skip a parameter without a gradient in a delayed run exactly when they skipped it
  in the synchronous one (no weight decay, no momentum decay, no step count for it). Treating
  ``None`` as zero would instead decay never-used parameters that the synchronous run leaves
  alone. Only the zero start holds a zero for every parameter.
* **Gradient clipping goes after the swap**, just before ``optimizer.step()``: the clipped gradient is
  the applied one (2BW clips the gradient it applies), and the norm the loop sees is the norm of
  the update's gradient. Clipping is a function of one step's gradient alone, so clipping the
  fresh gradient before the swap would apply the same values; after is simpler to reason about.
* **Delay 0 is a no-op**: :meth:`GradientDelay.apply` returns at once, allocates nothing and touches
  no tensor, so a run at delay 0 is bit-identical to a run without the module.

Cost: the swap moves no data. It exchanges tensor references (one Python assignment per parameter,
no kernel, no host sync): the ring takes the tensor autograd just wrote, ``.grad`` gets the stale
one. Memory: ``d`` gradients per parameter (:meth:`GradientDelay.nbytes`). A gradient that is a view
of a larger buffer (DDP's ``gradient_as_bucket_view=True``, flat-gradient optimizers) is cloned
before it is stored, since its owner overwrites the buffer on the next backward (tested with a
hand-made view; DDP in that mode is untested: the loop uses DDP's default, no bucket views).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: spec and sweep-file checks call check_delay torch-free
    from torch import Tensor

FORMAT = 1  # version of the state_dict layout below


def check_delay(delay: Any) -> int:
    """``delay`` if it is an integer >= 0, else ``ValueError`` saying what is valid."""
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
        raise ValueError(
            f"invalid delay: {delay!r} (must be an integer >= 0: 0 = synchronous, "
            f"1 = one-step stale gradients as in PipeDream-2BW, 2+ = staler)"
        )
    return delay


class GradientDelay:
    """A ring of the last ``delay`` gradients of ``params``; :meth:`apply` makes ``.grad`` stale.

    Call :meth:`apply` once per optimizer step, after the step's backward (all micro-batches, after
    DDP's all-reduce) and before gradient clipping and ``optimizer.step()``. The ring is allocated at
    the first :meth:`apply` (or :meth:`load_state_dict`), as zeros of each gradient's dtype and device
    (the parameter's when it has no gradient yet). ``steps`` counts the calls to :meth:`apply`.
    """

    def __init__(self, params: Iterable[Tensor], delay: int):
        from torch import Tensor

        self.delay = check_delay(delay)
        unique: dict[int, Tensor] = {}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"GradientDelay takes tensors, got {type(p).__name__}")
            unique.setdefault(id(p), p)
        self.params: list[Tensor] = list(unique.values())
        self.steps = 0
        # _ring[k][i]: parameter i's gradient in slot k; slot _ring[steps % delay] holds the oldest.
        self._ring: list[list[Tensor | None]] | None = None

    def __repr__(self) -> str:
        return f"GradientDelay(delay={self.delay}, params={len(self.params)}, steps={self.steps})"

    @property
    def position(self) -> int:
        """The ring slot that holds the oldest gradient (the next one :meth:`apply` hands out)."""
        return self.steps % self.delay if self.delay else 0

    @property
    def warming_up(self) -> bool:
        """True while the next :meth:`apply` hands out a start-up zero (fewer than ``delay`` steps seen)."""
        return self.steps < self.delay

    def _allocate(self) -> list[list[Tensor | None]]:
        import torch

        with torch.no_grad():
            return [
                [torch.zeros_like(p.grad if p.grad is not None else p, requires_grad=False) for p in self.params]
                for _ in range(self.delay)
            ]

    def apply(self) -> None:
        """Swap every parameter's ``.grad`` with its gradient from ``delay`` steps ago.

        Afterwards ``p.grad`` is ``g_{t-delay}`` (zero while ``t < delay``; ``None`` when that step
        gave ``p`` no gradient) and the ring keeps this step's ``g_t``. No-op at delay 0.
        """
        if not self.delay:
            return
        if self._ring is None:
            self._ring = self._allocate()
        slot = self._ring[self.position]
        for i, p in enumerate(self.params):
            fresh = p.grad
            if fresh is not None and fresh._is_view():
                fresh = fresh.clone()  # a bucket / flat-buffer view: its owner rewrites it next step
            p.grad = slot[i]
            slot[i] = fresh
        self.steps += 1

    def buffered(self) -> list[list[Tensor | None]]:
        """The stored gradients oldest first: ``[k][i]`` is parameter ``i``'s gradient of step
        ``steps - delay + k`` (a zero for steps < 0). Empty before the first :meth:`apply`."""
        if self._ring is None:
            return []
        k = self.position
        return self._ring[k:] + self._ring[:k]

    def nbytes(self) -> int:
        """Bytes held by the ring (0 at delay 0 and before the first :meth:`apply`)."""
        return sum(g.numel() * g.element_size() for slot in self._ring or () for g in slot if g is not None)

    # ----------------------------------------------------------------------------------------------
    # Checkpointing: the ring is optimizer state (a resumed or branched run continues its delay).

    def state_dict(self) -> dict[str, Any]:
        """``{"format", "delay", "steps", "position", "shapes", "buffer"}``. ``buffer`` is the ring in
        slot order (``None`` before the first :meth:`apply`); its tensors are the live ones, as
        ``optimizer.state_dict()``'s are: serialise it (``torch.save``) before the next step."""
        return {
            "format": FORMAT,
            "delay": self.delay,
            "steps": self.steps,
            "position": self.position,
            "shapes": [list(p.shape) for p in self.params],
            "buffer": None if self._ring is None else [list(slot) for slot in self._ring],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict`, possibly saved on another device: each
        gradient is moved to its parameter's device and dtype). Raises ``ValueError``, leaving this
        object unchanged, when the delay, the number or the shapes of the parameters differ, or when
        ``state`` is not a delay state."""
        if not isinstance(state, Mapping) or state.get("format") != FORMAT:
            raise ValueError(
                f"not a gradient-delay state of format {FORMAT}: "
                f"{type(state).__name__} with keys {sorted(state) if isinstance(state, Mapping) else []}"
            )
        delay, steps, buffer = state.get("delay"), state.get("steps"), state.get("buffer", "missing")
        if delay != self.delay:
            raise ValueError(
                f"the checkpoint's gradient delay is {delay!r}, this run's is {self.delay}: "
                f"a run continues (or branches) only at its own delay"
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"invalid gradient-delay state: steps = {steps!r}")
        if self.delay and state.get("position") != steps % self.delay:
            raise ValueError(
                f"invalid gradient-delay state: position {state.get('position')!r} "
                f"!= steps % delay = {steps % self.delay}"
            )
        shapes = [list(p.shape) for p in self.params]
        saved = state.get("shapes")
        if saved is None or len(saved) != len(shapes):
            raise ValueError(
                f"the checkpoint's gradient delay holds "
                f"{'?' if saved is None else len(saved)} parameters, this model has {len(shapes)}"
            )
        for i, (a, b) in enumerate(zip(saved, shapes)):
            if list(a) != b:
                raise ValueError(
                    f"the checkpoint's gradient delay holds parameter {i} of shape {list(a)}, "
                    f"this model's has shape {b}"
                )
        ring = None
        if buffer is not None:
            if (
                buffer == "missing"
                or not isinstance(buffer, (list, tuple))
                or len(buffer) != self.delay
                or any(not isinstance(s, (list, tuple)) or len(s) != len(self.params) for s in buffer)
            ):
                raise ValueError(
                    f"invalid gradient-delay state: the buffer must hold {self.delay} slot(s) of "
                    f"{len(self.params)} gradient(s)"
                )
            ring = [
                [self._place(g, p, k, i) for i, (g, p) in enumerate(zip(slot, self.params))]
                for k, slot in enumerate(buffer)
            ]
        elif steps and self.delay:
            raise ValueError(f"invalid gradient-delay state: {steps} steps taken but no buffer")
        self._ring, self.steps = ring, steps

    @staticmethod
    def _place(g: Any, p: Tensor, k: int, i: int) -> Tensor | None:
        from torch import Tensor

        if g is None:
            return None
        if not isinstance(g, Tensor) or list(g.shape) != list(p.shape):
            what = list(g.shape) if isinstance(g, Tensor) else type(g).__name__
            raise ValueError(
                f"the checkpoint's delayed gradient {i} (slot {k}) is {what}, its parameter has shape {list(p.shape)}"
            )
        return g.detach().to(device=p.device, dtype=p.dtype, copy=True)
