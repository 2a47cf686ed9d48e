"""Hyperparameter sweeps: Ray Tune over Ray Train runs, tracked in MLflow, gated like `raylane train`.

Train inside Tune, the Ray Train V2 way: each Tune trial is a small driver function that runs the
same `TorchTrainer` as `raylane train` (`raylane.training.make_trainer`, so a trial may use several
workers and GPUs) and forwards every epoch's report to Tune with `TuneReportCallback`. The data
side (point-in-time training set, split, preprocessing) is prepared once by the sweep's driver and
shared by every trial through the object store.

- **Search:** the space comes from ``tune.space`` (validated with the config: unknown parameters,
  distributions, empty choices, bad bounds and combinations that do not fit fail before anything
  starts); ``tune.search.type`` is random or grid search with a seeded generator, or Optuna's TPE,
  or HyperOpt (`search`), seeded too. ``tune.warm_start: champion`` and
  ``tune.points_to_evaluate`` are the first trials.
- **Scheduling:** ASHA, PBT or FIFO on the validation metric, with ``epochs_completed``
  as the clock (true across resumes). Under PBT each epoch's checkpoint reaches Tune, and a trial
  copied from another continues from that checkpoint with mutated params (`trial`).
- **Concurrency:** as many trials as the cluster's CPUs (and GPUs) can hold at once, unless
  ``tune.max_concurrent_trials`` says otherwise.
- **MLflow:** one parent run per sweep; every trial is a nested child run with its full parameter
  set and per-epoch metrics (logged by the trial's rank-0 worker, as in `raylane train`), ended by
  a driver-side Tune callback ``FINISHED`` (tag ``raylane.outcome`` = ``completed`` or
  ``stopped_early``) or ``FAILED``, never left ``RUNNING``, also when ASHA stops the trial.
- **Registration:** the best trial's best checkpoint is evaluated on the holdout, logged as a model
  in its child run and registered as ``challenger`` through the same promotion gate as training.
- **Resume:** everything lives under ``<storage_root>/sweeps/<name>/``. After the driver dies,
  ``resume=True`` restores the Tune experiment and its searcher: finished trials are not re-run,
  unfinished ones restart their Ray Train run, which picks up its last checkpoint (the Train run is named after the
  trial). The sweep directory holds Tune's pickled state: keep the storage root as private as the
  code (see docs/security.md).

Where things live: `space` (search space, trial configs, concurrency), `search` (searchers,
schedulers, warm starts), `trial` (the trainable and its MLflow child run), `callbacks` (the
driver's Tune callbacks: run outcomes, progress), `results` (summaries, rungs, the result, the
best checkpoint), `reclaim` (what dead drivers left), `run` (the driver: state, parent run, Tuner,
registration of the best trial).
"""

from raylane.errors import SweepInterrupted
from raylane.sweep.results import SweepProgress, SweepResult, TrialSummary
from raylane.sweep.run import latest_sweep, sweep, sweeps_dir
from raylane.sweep.space import concurrency, planned_trials, search_space, trial_config

__all__ = [
    "SweepInterrupted",
    "SweepProgress",
    "SweepResult",
    "TrialSummary",
    "concurrency",
    "latest_sweep",
    "planned_trials",
    "search_space",
    "sweep",
    "sweeps_dir",
    "trial_config",
]
