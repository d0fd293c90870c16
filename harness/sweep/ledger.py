"""What the storage says about a sweep: the read side every worker, the reconciliation
(``harness.sweep.reconcile``) and the final count share.

A ``Ledger`` opens the Optuna storage and each plan's tune and eval studies (created on first use,
checked against the plan: ``config_refusal``) and answers, from the trials, which planned runs
(slots, ``harness.sweep.slots``) a study wants and which are finished: the tune slots, the best
finished one, the configuration a plan evaluates (its own best, a ``transfer_from`` donor's, or for
a branch its parent's shared values, ``harness.sweep.branch``) and its eval slots, whether a branch
may start, and the progress over the whole sweep. It runs nothing and writes nothing but the
studies themselves; ``harness.sweep.worker.Worker`` is a ledger that also claims and runs.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from typing import Any

from harness.errors import UserError
from harness.sweep import optuna_api
from harness.sweep import slots as slots_rules
from harness.sweep.branch import shared_part
from harness.sweep.plan import StudyPlan, Sweep, jsonable
from harness.sweep.resolve import TaskInfo, resolve_plan
from harness.sweep.slots import CONFIG
from harness.sweep.space import default_hparams, default_params, hparams_from_params, qmc_params, stable_seed
from harness.sweep.storage import SweepWarning, open_storage, redact_url, storage_kind
from harness.vocab import Metric, as_direction


class Ledger:
    """The studies of ``sweep`` in the storage at ``storage_url``, and what their trials say.

    ``info``: study -> ``TaskInfo`` already resolved (``harness.sweep.resolve.preflight``); a plan
    missing from it is resolved on first use."""

    def __init__(self, sweep: Sweep, storage_url: str, *, info: Mapping[str, TaskInfo] | None = None):
        self.sweep = sweep
        self.storage_url = storage_url
        self.storage = open_storage(storage_url, sweep.heartbeat)
        self.rdb = storage_kind(self.storage) == "rdb"
        self._info: dict[str, TaskInfo] = dict(info or {})
        self._studies: dict[str, Any] = {}
        self._plans = {plan.study: plan for plan in sweep.studies}
        self._warned: set[str] = set()

    # -- studies -------------------------------------------------------------------------------

    def info(self, plan: StudyPlan) -> TaskInfo:
        if plan.study not in self._info:
            self._info[plan.study] = resolve_plan(self.sweep, plan)
        return self._info[plan.study]

    def study(self, plan: StudyPlan, phase: str):
        """The tune or eval study of ``plan`` (created on first use, checked against the plan)."""
        import optuna

        name = plan.study if phase == "tune" else plan.eval_study
        if name in self._studies:
            return self._studies[name]
        direction = Metric(self.info(plan).metric, as_direction(self.info(plan).direction)).optuna_direction
        pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
        if phase == "tune" and self.sweep.pruner is not None:
            pruner = optuna.pruners.MedianPruner(n_startup_trials=self.sweep.pruner.n_startup_trials, n_warmup_steps=0)
        stored = optuna_api.study_user_attrs(self.storage, name)
        refusal = config_refusal(plan, name, stored, self.storage_url)
        if refusal:
            raise UserError(refusal)
        study = optuna.create_study(
            study_name=name,
            storage=self.storage,
            direction=direction,
            sampler=self._sampler(plan, None),
            pruner=pruner,
            load_if_exists=True,
        )
        if stored is None or CONFIG not in stored:
            study.set_user_attr(CONFIG, plan.config())
        self._studies[name] = study
        return study

    def _sampler(self, plan: StudyPlan, slot: int | None):
        """TPE is re-seeded per slot from (tune seed, study, slot): a single-worker sweep is
        reproducible and concurrent workers never draw the same random configuration. QMC slots are
        enqueued with their Sobol point (``qmc_params``), so the study's sampler never draws."""
        import optuna

        cfg = self.sweep.sampler
        if cfg.name == "qmc":
            return optuna.samplers.RandomSampler(seed=stable_seed(plan.seed, plan.study))
        kwargs: dict[str, Any] = {"constant_liar": True}
        if cfg.n_startup_trials is not None:
            kwargs["n_startup_trials"] = cfg.n_startup_trials
        return optuna.samplers.TPESampler(seed=stable_seed(plan.seed, plan.study, slot), **kwargs)

    def lost(self, study) -> dict[int, dict]:
        """Finished trials of ``study`` whose records were found missing or unreadable."""
        return slots_rules.lost_trials(study.user_attrs)

    @staticmethod
    def phases(plan: StudyPlan) -> tuple[str, ...]:
        """The studies a plan has: tune and eval, or eval alone when it is not tuned."""
        return ("tune", "eval") if plan.trials else ("eval",)

    # -- slots ---------------------------------------------------------------------------------

    @staticmethod
    def _finished(trials, slots, lost=()) -> dict:
        """slot -> its finished trial (or None: given up), for the settled wanted slots."""
        return slots_rules.finished(trials, slots, lost)

    @staticmethod
    def _is_owner(trials, number: int, slot, wanted, lost=()) -> bool:
        """A slot belongs to its lowest-numbered trial that has not FAILED (nor lost its record)."""
        return slots_rules.is_owner(trials, number, slot, wanted, lost)

    def settled(self, study, slots) -> dict:
        """``_finished`` over the current trials of ``study``: slot -> finished trial (None: given up)."""
        return self._finished(study.get_trials(deepcopy=False), slots, self.lost(study))

    def tune_slots(self, plan: StudyPlan) -> dict[int, tuple[dict, dict]]:
        """Tune slots 0..trials-1. Slot 0 carries the optimizer's defaults as fixed parameters, unless
        one of them lies outside the plan's space (then slot 0 is drawn too; see ``default_params``).
        With QMC every slot carries its Sobol point, a function of the slot index alone."""
        from harness import plugins

        defaults = default_params(plan.space, plugins.optimizer(plan.optimizer).defaults)
        out: dict[int, tuple[dict, dict]] = {}
        for k in range(plan.trials):
            if k == 0 and defaults is not None:
                params = defaults
            elif self.sweep.sampler.name == "qmc":
                params = qmc_params(plan.space, stable_seed(plan.seed, plan.study), k)
            else:
                params = {}
            out[k] = (params, {})
        return out

    def best_slot(self, plan: StudyPlan):
        """The finished trial with the best value among tune slots 0..trials-1 (ties: the lowest
        slot), or None when none is COMPLETE; and whether tuning is still going on."""
        done = self.settled(self.study(plan, "tune"), range(plan.trials))
        if len(done) < plan.trials:
            return None, True
        direction = self.info(plan).direction
        best = None
        for slot in sorted(done):
            t = done[slot]
            if t is None or t.state.name != "COMPLETE" or t.value is None:
                continue
            if best is None or Metric("objective", as_direction(direction)).better(t.value, best[1].value):
                best = (slot, t)
        return best, False

    def evaluated_config(self, plan: StudyPlan) -> tuple[dict[str, Any] | None, int | None, bool]:
        """What ``plan`` evaluates: (hyperparameters, the tune slot they come from, still waiting).
        ``(None, None, False)`` when its study has no complete trial (nothing to evaluate). A branch
        evaluates its own best over its parent's shared values; a ``transfer_from`` plan the donor's
        best under its own fixed values; an untuned plan its fixed values over the defaults."""
        if plan.branch_from is not None:
            return self._child_eval_config(plan)
        tuned = plan if plan.transfer_from is None else self._plans[plan.transfer_from]
        if tuned.trials == 0:
            return default_hparams(plan), None, False
        best, tuning = self.best_slot(tuned)
        if tuning:
            return None, None, True
        if best is None:
            if plan.study not in self._warned:  # once per ledger: this is asked on every poll
                self._warned.add(plan.study)
                warnings.warn(
                    f"study {tuned.study} has no complete trial (all pruned or given up): "
                    f"nothing to evaluate for {plan.study}",
                    SweepWarning,
                    stacklevel=2,
                )
            return None, None, False
        slot, trial = best
        hparams = hparams_from_params(trial.params, tuned.space, tuned.fixed)
        if tuned is not plan:
            hparams.update(plan.fixed)  # the target entry's own fixed values win
        return hparams, slot, False

    def eval_slots(self, plan: StudyPlan) -> dict[str, tuple[dict, dict]] | None:
        """Eval slots, one per seed, keyed by seed and configuration: if the best configuration
        changes (the trial budget was changed after an evaluation), its eval runs are new slots.
        None while the plan is still being tuned."""
        hparams, best_number, waiting = self.evaluated_config(plan)
        if waiting:
            return None
        if hparams is None:
            return {}
        text = json.dumps(jsonable(hparams), sort_keys=True)
        config = hashlib.sha256(text.encode()).hexdigest()[:10]
        return {
            f"seed={s} config={config}": ({}, {"seed": s, "hparams": text, "best_trial": best_number})
            for s in plan.eval_seeds
        }

    def phase_slots(self, plan: StudyPlan, phase: str):
        return self.tune_slots(plan) if phase == "tune" else self.eval_slots(plan)

    def progress(self) -> tuple[int, int]:
        """(settled planned runs, planned runs) over the whole sweep, as the storage says."""
        done = 0
        for plan in self.sweep.studies:
            for phase in self.phases(plan):
                slots = self.phase_slots(plan, phase)
                if slots is None:
                    continue
                done += len(self.settled(self.study(plan, phase), slots))
        return done, self.sweep.planned_runs

    # -- branches (harness.sweep.branch) ---------------------------------------------------------

    def parent_configuration(self, plan: StudyPlan) -> tuple[dict[str, Any] | None, int | None, bool]:
        """The parent's evaluated configuration (all its hyperparameters), its best slot, and whether the
        parent is still being tuned. ``(None, None, False)`` when the parent has no complete trial."""
        assert plan.branch_from is not None  # asked of branch (child) plans only
        return self.evaluated_config(self.sweep.plan(plan.branch_from))

    def child_ready(self, plan: StudyPlan, phase: str) -> bool:
        """A child's tuning waits for its parent's tuning, its evaluation for its parent's evaluation."""
        assert plan.branch_from is not None  # asked of branch (child) plans only
        parent = self.sweep.plan(plan.branch_from)
        if phase == "tune":
            _, _, tuning = self.parent_configuration(plan)
            return not tuning
        slots = self.eval_slots(parent)
        if slots is None:
            return False
        return len(self.settled(self.study(parent, "eval"), slots)) >= len(slots)

    def _child_eval_config(self, plan: StudyPlan) -> tuple[dict[str, Any] | None, int | None, bool]:
        """What a child evaluates: (hyperparameters, the slot they come from, still waiting). Tuned
        children: their own best trial (which already holds the parent's shared values); untuned: the
        parent's shared values over the child's fixed ones, from the parent's best slot."""
        parent_hp, parent_slot, tuning = self.parent_configuration(plan)
        if tuning:
            return None, None, True
        if parent_hp is None:
            return None, None, False
        if plan.trials == 0 and plan.transfer_from is not None:
            # evaluates another study's configuration (a budget branch of SoftX, a reused cell) from
            # this parent's runs: the donor's hyperparameters, its own fixed values, the parent's shared
            donor_hp, donor_slot, waiting = self.evaluated_config(self._plans[plan.transfer_from])
            if waiting or donor_hp is None:
                return None, None, waiting
            return {**donor_hp, **dict(plan.fixed), **shared_part(plan, parent_hp)}, donor_slot, False
        if plan.trials == 0:
            return {**dict(plan.fixed), **shared_part(plan, parent_hp)}, parent_slot, False
        best, tuning = self.best_slot(plan)
        if tuning:
            return None, None, True
        if best is None:
            return None, None, False
        slot, trial = best
        own = hparams_from_params(trial.params, plan.space, plan.fixed)
        return {**own, **shared_part(plan, parent_hp)}, slot, False


def config_refusal(plan: StudyPlan, name: str, stored: Mapping[str, Any] | None, storage_url: str) -> str | None:
    """Why an existing study ``name`` cannot be resumed with ``plan`` (None: it can, or is new).
    The trial and eval-seed budgets are not part of a study's configuration: changing them is
    honoured (see ``harness.sweep``)."""
    if not stored or CONFIG not in stored:
        return None
    config = json.loads(json.dumps(plan.config()))
    previous = stored[CONFIG]
    if previous == config:
        return None
    changed = sorted(
        k
        for k in set(config) | set(previous)
        if json.dumps(config.get(k), sort_keys=True) != json.dumps(previous.get(k), sort_keys=True)
    )
    return (
        f"study {name} in {redact_url(storage_url)} was created with a different {', '.join(changed)}; "
        "resume with the original sweep file, or start afresh with another --out/--storage or suite name"
    )
