"""Optuna sweeps: the tune -> evaluate protocol over a grid of (task, dataset, optimizer).

A sweep file (``sweeps/*.yaml``) is validated completely before anything runs; see ``SCHEMA`` for
its keys. For every (task entry, dataset, optimizer) it defines one **study plan**:

1. **Tune**: one Optuna study ``<suite>/<entry>/<dataset>/<optimizer>`` over the optimizer's search
   space (``optimizers.REGISTRY[name].search_space``, narrowed or extended by the sweep), with the
   optimizer's defaults as trial 0, a seeded sampler (TPE by default, QMC optional), and the same
   trial budget for every optimizer. Every trial is one run (``harness.run.loop.run``, phase ``tune``,
   seed = the sweep's tune seed); the value told to Optuna is the run's ``objective``: the
   validation metric at the end of the budget, or the task's penalty for a diverged run (told as a
   COMPLETE trial, because Optuna's samplers ignore failed ones).
2. **Evaluate**: the best configuration re-run on the eval seeds (the same list for every
   optimizer, none equal to the tune seed), phase ``eval``, full budget, no pruning.

This package has no front door (import its modules); the work is done in modules cut along the seams,
each importing only modules listed before it:

- ``harness.sweep.plan``: the validated sweep as frozen data (``Sweep``, ``StudyPlan``, settings);
- ``harness.sweep.yamlfile``, ``harness.sweep.space`` (search space <-> Optuna, QMC, finite spaces),
  ``harness.sweep.axes`` (conditions and axes: schedule, delay, cells, budgets, margins),
  ``harness.sweep.expand`` (a validated entry into its plans: cells, SoftX branches, budget branches),
  ``harness.sweep.optimizer_entries`` (the ``optimizers`` list and its overrides), ``harness.sweep.schema``
  (the file, its validation: ``load``);
- ``harness.sweep.optuna_api`` (every use of Optuna beyond its user API, behind one adapter),
  ``harness.sweep.storage`` (storage URLs, the journal's torn tail), ``harness.sweep.slots`` (which trial
  holds which planned run; when one is given up), ``harness.sweep.liveness`` (is a trial's owner
  alive);
- ``harness.sweep.resolve`` (a plan's runs as ``RunSpec``s; the preflight), ``harness.sweep.branch``
  (SoftX from X: the rules), ``harness.sweep.ledger`` (what the storage says: studies, slots, the
  best configuration, what a plan evaluates), ``harness.sweep.reconcile`` (the run records vs the
  journal, over a ledger);
- ``harness.sweep.keeper`` (a ledger that keeps its trials: heartbeat, owner marks, reaping the dead),
  ``harness.sweep.worker`` (a keeper that claims and runs), ``harness.sweep.local``
  (checks before writing, ``<out>/plan.json``; local workers), ``harness.sweep.eta`` (time left from
  measured runs), ``harness.sweep.status`` (``optbench status``), the SLURM launcher
  (``harness.sweep.slurm``, ``harness.sweep.slurm_job``, ``harness.sweep.slurm_follow``),
  ``harness.sweep.estimate`` (``optbench plan``) and ``harness.sweep.cli``.

**Claims.** Each planned run is a **slot** -- tune slot ``k`` (k = 0..trials-1), or an eval slot per
(seed, best configuration) -- enqueued as a WAITING Optuna trial carrying the user attribute
``optbench_slot``. A worker claims work with ``study.ask()``, which pops a WAITING trial atomically
(journal lock / database transaction). If several workers enqueue the same slot at the same time,
or ``ask()`` creates a fresh trial because the queue emptied under it, the rule "a slot belongs to
its lowest-numbered trial that has not FAILED" makes every extra trial *surplus*: it is told FAIL
without running. The eval phase uses a second study ``<study>/eval`` with one slot per seed. On top
of that, ``harness.run.loop.run`` skips any run_id that already has a readable record, so nothing
finished is re-run. A tune run's record carries its slot as ``trial``; an eval run's, the slot it
evaluates.

**The records are the truth, the journal only schedules** (``harness.sweep.reconcile``). At a worker's
start and whenever a phase of a study completes, every finished trial's record is read back; a
missing or unreadable one (moved aside to ``<file>.corrupt``, named in a warning) opens its slot
again, re-queued with the same configuration, so the re-run recreates the same run_id (a SoftX
child whose parent checkpoint is gone by then runs from scratch, under its from-scratch run_id). The final
line of ``optbench sweep`` counts the planned runs that have a readable record, from the records;
the exit code is 0 only when that is all of them (whichever worker processes died on the way).

**Crashes: killed from outside vs failing on its own.** A run that raises a Python exception inside
the worker is a result: its record is written with status ``failed`` and ``status_detail`` = the
exception's first line, and the same configuration is queued again, up to ``MAX_RETRY`` times;
then the slot is *given up*, its failure record kept (the final line lists it; the leaderboard
counts it in ``n_failed`` / tune failures). A given-up slot whose failure record is later lost or cut
short gets it back on the next re-run, written again from the journal (``harness.sweep.reconcile``); the
run is not tried again. A worker that vanishes without an exception (SIGKILL,
the OOM killer, preemption, power loss) leaves its trial RUNNING: a worker that finds it (the owner's
pid gone on this host, or no heartbeat for ``heartbeat.grace`` seconds; RDB storage: Optuna's own
heartbeat) fails it and re-queues the same configuration. That is not the run's fault and does
**not** count toward ``MAX_RETRY`` -- kill a sweep as often as you like -- except for a safety cap
of ``MAX_SILENT_DEATHS`` re-runs of one slot (a run that gets its process OOM-killed every time
would otherwise loop forever on a cluster that restarts workers); past 3 a warning names the slot.
Ctrl-C (SIGINT) or SIGTERM release the current trial the same way, so re-running resumes.

**Budgets.** ``trials`` and ``eval_seeds`` are the only keys an existing sweep may change; every
other change to a study's configuration is refused before anything is written (no ``sweep.yaml``, no
journal entry). Changes are honoured exactly: raised, the studies go on; lowered to ``k`` trials,
tune slots 0..k-1 count and the best of them is evaluated; lowered to ``n`` eval seeds, exactly the
listed seeds (the first n) count. Runs beyond the budget stay on disk, and the leaderboard never uses
them: it reads the budget from ``<out>/plan.json``, written with ``<out>/sweep.yaml`` (always the last
accepted file) before any work, and filters with ``harness.results.budget`` (no import of the sweep).

**Finite spaces.** A space of only choices (or integer ranges) can draw the same configuration twice,
and the same configuration is the same run_id: the second draw is replaced by an unused
configuration, and ``trials`` may not exceed the number of configurations.

**Storage** (``harness.sweep.storage``): ``postgresql://...`` or another SQLAlchemy URL, or the path of
an Optuna journal file (default ``<out>/optuna.journal``). A journal's torn or garbage tail (a write
cut short by a crash or power loss) is cut back to the last complete entry before it is used, the
damaged file kept as ``<journal>.damaged-<time>``, with a warning; damage followed by complete
entries is refused (exit 2) with the command that gets out of it.
"""
