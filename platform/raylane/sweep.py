"""Hyperparameter sweeps: Ray Tune over Ray Train runs, tracked in MLflow, gated like `raylane train`.

Train inside Tune, the Ray Train V2 way: each Tune trial is a small driver function that runs the
same `TorchTrainer` as `raylane train` (`raylane.train.make_trainer`, so a trial may use several
workers and GPUs) and forwards every epoch's report to Tune with `TuneReportCallback`. The data
side (point-in-time training set, split, preprocessing) is prepared once by the sweep's driver and
shared by every trial through the object store.

- **Search:** the space comes from ``tune.space`` (validated with the config: unknown parameters,
  distributions, empty choices and bad bounds fail before anything starts); random search with a
  seeded generator, so the same config samples the same trials.
- **Early stopping:** ASHA on the validation metric, with ``epochs_completed`` as its clock (true
  across resumes); ``fifo`` runs every trial to ``max_t`` epochs.
- **Concurrency:** as many trials as the cluster's CPUs (and GPUs) can hold at once, unless
  ``tune.max_concurrent_trials`` says otherwise.
- **MLflow:** one parent run per sweep; every trial is a nested child run with its full parameter
  set and per-epoch metrics (logged by the trial's rank-0 worker, as in `raylane train`), ended by
  a driver-side Tune callback ``FINISHED`` (tag ``raylane.outcome`` = ``completed`` or
  ``stopped_early``) or ``FAILED``, never left ``RUNNING``, also when ASHA stops the trial.
- **Registration:** the best trial's best checkpoint is evaluated on the holdout, logged as a model
  in its child run and registered as ``challenger`` through the same promotion gate as training.
- **Resume:** everything lives under ``<storage_root>/sweeps/<name>/``. After the driver dies,
  ``resume=True`` restores the Tune experiment: finished trials are not re-run, unfinished ones
  restart their Ray Train run, which picks up its last checkpoint (the Train run is named after the
  trial). The sweep directory holds Tune's pickled state: keep the storage root as private as the
  code (see docs/security.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from raylane.config import ProjectConfig
from raylane.errors import RaylaneError, SweepInterrupted, UserError
from raylane.train import Prepared, TrainResult, ensure_experiment, finish, log_run_header, make_trainer, prepare

__all__ = [
    "SweepInterrupted",
    "SweepProgress",
    "SweepResult",
    "TrialSummary",
    "concurrency",
    "latest_sweep",
    "search_space",
    "sweep",
]

log = logging.getLogger(__name__)

_STATE = "sweep.json"
# A trial's own function only drives its Ray Train run, whose workers reserve the real resources; it
# takes no CPU (Tune needs some resource in a trial's bundle: one byte of memory).
_BEST_PATH, _BEST_SCORE = "best_checkpoint_path", "best_checkpoint_score"  # in a trial's final report
_TRIAL_RESOURCES: dict[str, float] = {"cpu": 0, "memory": 1}


@dataclass
class TrialSummary:
    """One trial, as the sweep ended."""

    trial_id: str
    params: dict[str, Any]
    outcome: str  # completed | stopped_early | failed | not_run
    epochs: int
    best: float | None
    seconds: float
    run_id: str | None = None
    error: str | None = None


@dataclass
class SweepResult:
    """What a sweep produced."""

    name: str
    parent_run_id: str
    metric: str
    mode: str
    trials: list[TrialSummary]
    best: TrialSummary
    train: TrainResult | None
    concurrency: int
    seconds: float
    tune_seconds: float = 0.0  # the trials phase (Tune's fit) alone

    @property
    def trial_epochs(self) -> int:
        return sum(t.epochs for t in self.trials)

    @property
    def trial_seconds(self) -> float:
        return sum(t.seconds for t in self.trials)

    def count(self, outcome: str) -> int:
        return sum(t.outcome == outcome for t in self.trials)


@dataclass
class SweepProgress:
    """A snapshot of a running sweep, handed to the ``on_progress`` listener at every trial event."""

    total: int
    pending: int
    running: int
    completed: int
    stopped_early: int
    failed: int
    metric: str
    best: float | None
    best_trial: str | None
    event: str


# --------------------------------------------------------------------------- search space


def search_space(cfg: ProjectConfig) -> dict[str, Any]:
    """``tune.space`` as Ray Tune distributions (keys stay dotted: ``train.learning_rate``)."""
    from ray import tune

    out: dict[str, Any] = {}
    for key, dim in cfg.tune.space.items():
        low, high = dim.low or 0.0, dim.high or 0.0  # set for these types (checked by the config)
        if dim.type == "uniform":
            out[key] = tune.uniform(low, high)
        elif dim.type == "loguniform":
            out[key] = tune.loguniform(low, high)
        elif dim.type == "randint":
            out[key] = tune.randint(int(low), int(high))
        elif dim.type == "choice":
            out[key] = tune.choice(list(dim.values or []))
        else:
            out[key] = tune.grid_search(list(dim.values or []))
    return out


def trial_config(cfg: ProjectConfig, params: dict[str, Any]) -> ProjectConfig:
    """The project config of one trial: the sampled parameters applied, ``scheduler.max_t`` epochs."""
    doc = cfg.model_dump(mode="json")
    for key, value in params.items():
        section, _, name = key.partition(".")
        doc[section][name] = value
    doc["train"]["epochs"] = cfg.tune.scheduler.max_t
    return ProjectConfig.model_validate(doc)


def planned_trials(cfg: ProjectConfig) -> int:
    """How many trials the sweep runs: ``num_samples`` for every point of the grid dimensions."""
    return cfg.tune.num_samples * math.prod(len(d.values or []) for d in cfg.tune.space.values() if d.type == "grid")


def concurrency(cfg: ProjectConfig) -> int:
    """Trials at once: ``tune.max_concurrent_trials``, else as many as the cluster's resources hold."""
    import ray

    if cfg.tune.max_concurrent_trials is not None:
        return cfg.tune.max_concurrent_trials
    total = ray.cluster_resources()
    per_worker = dict(cfg.train.resources_per_worker)
    if cfg.train.use_gpu:
        per_worker.setdefault("GPU", 1.0)
    fits = [
        int(total.get(res, 0.0) // (amount * cfg.train.num_workers)) for res, amount in per_worker.items() if amount > 0
    ]
    return max(1, min(fits, default=1))


# --------------------------------------------------------------------------- trial side


def _trial(
    config: dict[str, Any], *, base: dict[str, Any], prep: Prepared, trials_dir: str, sweep: str, parent_run_id: str
) -> None:
    """One Tune trial: a Ray Train run of the trial's config, reporting every epoch to Tune.

    Its workers log per-epoch metrics to the trial's MLflow child run themselves, exactly as in
    `raylane train`, so an interrupted trial's epochs are all recorded even if the sweep's driver
    died before it saw them."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    cfg = trial_config(ProjectConfig.model_validate(base), config)
    trial_id = ray.tune.get_context().get_trial_id()
    run_id = _trial_run(cfg, sweep, parent_run_id, trial_id)
    # Named after the trial: restarted after a driver crash, the run resumes from its last checkpoint.
    trainer = make_trainer(
        cfg,
        prep,
        name=f"trial-{trial_id}",
        storage_path=Path(trials_dir),
        run_id=run_id,
        callbacks=[TuneReportCallback()],
    )
    result = trainer.fit()
    # The trial's last word: Ray Train's own best checkpoint and its score. A trial restarted after
    # its driver died may find its Ray Train run already finished; Train then returns the stored
    # result without reporting its epochs again, and this is how Tune learns how it ended.
    metric, mode = prep.metric, prep.mode
    best = result.get_best_checkpoint(metric=f"val_{metric}", mode=mode) or result.checkpoint
    kept = {c.path: m for c, m in (result.best_checkpoints or [])}
    if result.metrics and best is not None:
        ray.tune.report(
            {
                **result.metrics,
                _BEST_PATH: best.path,
                _BEST_SCORE: float(kept.get(best.path, result.metrics)[f"val_{metric}"]),
            }
        )


def _find_trial_run(client: Any, cfg: ProjectConfig, sweep: str, trial_id: str) -> Any | None:
    experiment = client.get_experiment_by_name(cfg.mlflow_experiment)
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`raylane.sweep` = '{sweep}' and tags.`raylane.trial_id` = '{trial_id}'",
    )
    return found[0] if found else None


def _trial_run(cfg: ProjectConfig, sweep: str, parent_run_id: str, trial_id: str) -> str:
    """The trial's MLflow run, a child of the sweep's: created with the trial's full parameter set,
    or found again (and marked running) when a resumed sweep restarts the trial."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    from raylane.train import _flat_params

    client = MlflowClient(tracking_uri=cfg.mlflow_tracking_uri)
    found = _find_trial_run(client, cfg, sweep, trial_id)
    if found is not None:
        client.update_run(found.info.run_id, status="RUNNING")
        return str(found.info.run_id)
    experiment = client.get_experiment_by_name(cfg.mlflow_experiment)
    assert experiment is not None  # the sweep's driver created it
    tags = {"mlflow.parentRunId": parent_run_id, "raylane.sweep": sweep, "raylane.trial_id": trial_id}
    run = client.create_run(
        experiment.experiment_id, run_name=f"{sweep}/{trial_id}", tags={**tags, "raylane.kind": "trial"}
    )
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in _flat_params(cfg).items()])
    return str(run.info.run_id)


# --------------------------------------------------------------------------- driver-side callbacks

_listeners: list[Callable[[SweepProgress], object]] = []


def _outcome(trial: Any, max_t: int) -> str:
    if trial.status == "ERROR":
        return "failed"
    last = trial.last_result or {}
    # Called as a trial ends (its status may not say so yet). Tune marks every ended trial `done`,
    # whether its function returned or the scheduler stopped it, so the epochs tell: a trial that
    # stopped before `max_t` was stopped early (by ASHA, or by its own `train.early_stopping`).
    return "completed" if last.get("epochs_completed", 0) >= max_t else "stopped_early"


def _make_callbacks(cfg: ProjectConfig, name: str, parent_run_id: str, metric: str, mode: str) -> list[Any]:
    """Tune callbacks (pickled into the experiment by Tune, so they hold no process state)."""
    from mlflow import MlflowClient
    from mlflow.entities import RunTag
    from ray.tune import Callback

    val_key = f"val_{metric}"
    expected = planned_trials(cfg)

    class EndTrialRuns(Callback):  # type: ignore[misc]
        """Ends each trial's MLflow run with its outcome as the trial ends, including trials the
        scheduler stopped (whose own code never gets to say so): ``FINISHED`` or ``FAILED``."""

        def _end(self, trial: Any, outcome: str) -> None:
            client = MlflowClient(tracking_uri=cfg.mlflow_tracking_uri)
            run = _find_trial_run(client, cfg, name, trial.trial_id)
            if run is None:  # the trial failed before its run existed
                return
            epochs = str((trial.last_result or {}).get("epochs_completed", 0))
            client.log_batch(
                run.info.run_id, tags=[RunTag("raylane.outcome", outcome), RunTag("raylane.epochs", epochs)]
            )
            client.set_terminated(run.info.run_id, status="FAILED" if outcome == "failed" else "FINISHED")

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._end(trial, _outcome(trial, cfg.tune.scheduler.max_t))

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._end(trial, "failed")

    class Progress(Callback):  # type: ignore[misc]
        """Counts trials by state and tracks the best metric; tells `sweep`'s listener."""

        def _emit(
            self, trials: list[Any], event: str, trial: Any, now: str | None = None, latest: float | None = None
        ) -> None:
            # Tune calls back before it updates the trial's status: `now` is what `trial` has become.
            if not _listeners:
                return
            max_t = cfg.tune.scheduler.max_t
            states = [
                now if t is trial and now else _outcome(t, max_t) if t.status == "TERMINATED" else t.status.lower()
                for t in trials
            ]
            best, best_trial = None, None
            for t in trials:
                values = [(getattr(t, "metric_analysis", {}) or {}).get(val_key, {}).get(mode)]
                if t is trial and latest is not None:  # Tune records this result after the callbacks
                    values.append(latest)
                for value in values:
                    if value is not None and (best is None or (value > best if mode == "max" else value < best)):
                        best, best_trial = value, t.trial_id
            status = SweepProgress(
                total=max(len(trials), expected),
                pending=states.count("pending"),
                running=states.count("running"),
                completed=states.count("completed"),
                stopped_early=states.count("stopped_early"),
                failed=states.count("failed"),
                metric=val_key,
                best=best,
                best_trial=best_trial,
                event=event,
            )
            for listener in _listeners:
                listener(status)

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._emit(trials, f"trial {trial.trial_id} started", trial, "running")

        def on_trial_result(
            self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
        ) -> None:
            value = result.get(val_key)
            shown = f"{value:.4f}" if isinstance(value, float) else "?"
            epoch = result.get("epochs_completed")
            latest = value if isinstance(value, float) else None
            self._emit(trials, f"trial {trial.trial_id} epoch {epoch}: {val_key} {shown}", trial, latest=latest)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            outcome = _outcome(trial, cfg.tune.scheduler.max_t)
            self._emit(trials, f"trial {trial.trial_id} {outcome.replace('_', ' ')}", trial, outcome)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._emit(trials, f"trial {trial.trial_id} failed", trial, "failed")

    return [EndTrialRuns(), Progress()]


# --------------------------------------------------------------------------- driver


def _identity(cfg: ProjectConfig) -> str:
    """What a resumed sweep must share with the one it resumes: everything but how Ray is reached."""
    doc = cfg.model_dump(mode="json")
    doc["backends"].pop("ray")
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def sweeps_dir(cfg: ProjectConfig) -> Path:
    return cfg.storage_root / "sweeps"


def latest_sweep(cfg: ProjectConfig, *, unfinished: bool = False) -> str | None:
    """The most recently started sweep of the project (``unfinished``: one that did not finish)."""
    found = []
    for state in sweeps_dir(cfg).glob(f"*/{_STATE}"):
        doc = json.loads(state.read_text())
        if not unfinished or doc.get("status") != "finished":
            found.append((doc.get("started", 0.0), doc["name"]))
    return max(found)[1] if found else None


def sweep(
    cfg: ProjectConfig,
    *,
    name: str | None = None,
    resume: bool = False,
    register: bool = True,
    step: Callable[[str], object] = lambda _: None,
    on_progress: Callable[[SweepProgress], object] | None = None,
    verbose: bool = False,
) -> SweepResult:
    """Run (or resume) a sweep of ``cfg.tune`` and register its best model. Needs Ray.

    Args:
        cfg: The project. A resume needs the config the sweep started with (``backends.ray``
            may differ) and the same training data.
        name: The sweep's name (a new unique one when omitted; the latest unfinished one on resume).
        resume: Continue an interrupted sweep: finished trials are kept, unfinished ones resume.
        register: Register the best trial's model and run the promotion gate.
        step: Called with a short text at each stage.
        on_progress: Called with a `SweepProgress` at every trial event.
        verbose: Let Ray Tune print its own output.

    Raises:
        UserError: a bad name, nothing to resume, the sweep already finished or still running, or a
            resume with another config or other data.
        SweepInterrupted: Ctrl-C; the state is saved for a resume.
        ClusterError: the cluster can never hold one trial's workers.
    """
    import mlflow
    from mlflow import MlflowClient
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    started = time.perf_counter()
    if not cfg.tune.space:
        raise UserError(
            "tune.space is empty: a sweep needs at least one parameter to search",
            fix="add e.g. `train.learning_rate: {type: loguniform, low: 0.0003, high: 0.01}` under tune.space",
        )
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise UserError(f"sweep name {name!r} is not allowed", fix="use letters, digits, `_`, `.` and `-` (up to 100)")
    state_file: Path
    if resume:
        name = name or latest_sweep(cfg, unfinished=True)
        if name is None or not (sweeps_dir(cfg) / name / _STATE).exists():
            raise UserError(
                f"no {'sweep named ' + repr(name) if name else 'unfinished sweep'} to resume under {sweeps_dir(cfg)}",
                fix="start one with `raylane sweep CONFIG`",
            )
        state_file = sweeps_dir(cfg) / name / _STATE
        state = json.loads(state_file.read_text())
        if state.get("status") == "finished":
            raise UserError(f"sweep {name!r} already finished", fix="start a new one with `raylane sweep CONFIG`")
        if state["identity"] != _identity(cfg):
            raise UserError(
                f"the config differs from the one sweep {name!r} started with",
                fix="resume with the same config and --set values (backends.ray may differ), or start a new sweep",
            )
    else:
        name = name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        if (sweeps_dir(cfg) / name).exists():
            raise UserError(f"a sweep named {name!r} already exists", fix="pick another name, or pass --resume")
        state_file = sweeps_dir(cfg) / name / _STATE
        state = {
            "name": name,
            "started": time.time(),
            "status": "running",
            "identity": _identity(cfg),
            "config": cfg.model_dump(mode="json"),
        }

    if resume:
        _reclaim(state.get("drivers", []), name)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    prep = prepare(cfg, step=step)
    experiment = ensure_experiment(cfg)
    client = MlflowClient(tracking_uri=cfg.mlflow_tracking_uri)
    data_hash = prep.lineage.get("data_hash")
    if state.setdefault("data_hash", data_hash) != data_hash:
        raise UserError(
            f"the training data changed since sweep {name!r} started (data hash {state['data_hash']} → {data_hash})",
            fix="resume only on the data the sweep started with, or start a new sweep",
        )
    if "parent_run_id" not in state:
        with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=name) as parent:
            log_run_header(cfg, prep.lineage, {"raylane.kind": "sweep", "raylane.sweep": name})
            mlflow.log_dict({k: v.model_dump(mode="json") for k, v in cfg.tune.space.items()}, "sweep/space.json")
        state["parent_run_id"] = parent.info.run_id
    state["drivers"] = [*state.get("drivers", []), _job_id()]
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(state, indent=1))
    parent_run_id = state["parent_run_id"]
    client.update_run(parent_run_id, status="RUNNING")  # until the sweep ends

    sweep_dir = sweeps_dir(cfg) / name
    metric, mode = prep.metric, prep.mode
    val_key = f"val_{metric}"
    slots = concurrency(cfg)
    trainable = tune.with_resources(
        tune.with_parameters(
            _trial,
            base=cfg.model_dump(mode="json"),
            prep=prep,
            trials_dir=str(sweep_dir / "trials"),
            sweep=name,
            parent_run_id=parent_run_id,
        ),
        _TRIAL_RESOURCES,
    )
    tune_dir = sweep_dir / "tune"
    if resume and tune.Tuner.can_restore(str(tune_dir)):
        step(f"resuming sweep {name} ({slots} trial(s) at a time)")
        tuner = tune.Tuner.restore(str(tune_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        sched = cfg.tune.scheduler
        scheduler = (
            tune.schedulers.ASHAScheduler(
                time_attr="epochs_completed",
                max_t=sched.max_t,
                grace_period=sched.grace_period,
                reduction_factor=sched.reduction_factor,
            )
            if sched.type == "asha"
            else tune.schedulers.FIFOScheduler()
        )
        step(f"sweep {name}: {cfg.tune.num_samples} trial(s), {slots} at a time, {sched.type} scheduler")
        tuner = tune.Tuner(
            trainable,
            param_space=search_space(cfg),
            tune_config=tune.TuneConfig(
                metric=val_key,
                mode=mode,
                num_samples=cfg.tune.num_samples,
                scheduler=scheduler,
                # Random search, seeded: the same config samples the same trials.
                search_alg=BasicVariantGenerator(max_concurrent=slots, random_state=cfg.train.seed),
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str(sweep_dir),
                verbose=0,
                callbacks=_make_callbacks(cfg, name, parent_run_id, metric, mode),
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
    if on_progress is not None:
        _listeners.append(on_progress)
    tune_output = io.StringIO()
    tune_started = time.perf_counter()
    try:
        # Tune prints its own banner and tables on stdout even when told to be silent.
        with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(tune_output):
            grid = tuner.fit()
        results = [grid[i] for i in range(len(grid))]
    finally:
        if on_progress is not None:
            _listeners.remove(on_progress)
        log.debug("Ray Tune's output:\n%s", tune_output.getvalue())
    tune_seconds = time.perf_counter() - tune_started

    trials = _summaries(cfg, results, client, experiment.experiment_id, name, val_key, mode)
    # Tune marks every trial that ended `done` (finished or stopped by the scheduler), or errored.
    unfinished = [r for r in results if not (r.error or (r.metrics or {}).get("done"))]
    if unfinished or len(results) < planned_trials(cfg):  # Ctrl-C: Tune saved its state and returned early
        stopped = {str((r.metrics or {}).get("trial_id")) for r in unfinished}
        for t in trials:
            if t.run_id is not None and t.trial_id in stopped:
                client.set_terminated(t.run_id, status="KILLED")
        client.set_terminated(parent_run_id, status="KILLED")
        raise SweepInterrupted(
            f"sweep {name} interrupted with {len(results) - len(unfinished)} of {planned_trials(cfg)} trials done;"
            " its state is saved",
            fix=f"`raylane sweep CONFIG --resume --name {name}` continues it",
        )
    scored = [t for t in trials if t.best is not None and not math.isnan(t.best)]
    if not scored:
        client.set_terminated(parent_run_id, status="FAILED")
        errors = "; ".join(f"{t.trial_id}: {t.error}" for t in trials if t.error)
        raise RaylaneError(f"sweep {name}: no trial reported {val_key}", fix=f"see the trial errors: {errors[:500]}")
    best = max(scored, key=lambda t: (t.best or 0.0) if mode == "max" else -(t.best or 0.0))
    best_result = next(r for r in results if (r.metrics or {}).get("trial_id") == best.trial_id)
    checkpoint = _best_checkpoint(best_result, val_key, mode)
    best_cfg = trial_config(cfg, best.params)
    assert best.run_id is not None
    with mlflow.start_run(run_id=best.run_id):
        log_run_header(best_cfg, prep.lineage, params=False)  # the trial logged its parameters
        result = finish(
            best_cfg,
            prep,
            checkpoint,
            best.run_id,
            epochs=best.epochs,
            history=[],
            register=register,
            step=step,
        )
    elapsed = time.perf_counter() - started
    out = SweepResult(name, parent_run_id, metric, mode, trials, best, result, slots, elapsed, tune_seconds)
    with mlflow.start_run(run_id=parent_run_id):
        mlflow.log_metrics(
            {
                f"best_{val_key}": best.best or float("nan"),
                **{f"best_holdout_{k}": v for k, v in result.metrics.items()},
                "trials_completed": out.count("completed"),
                "trials_stopped_early": out.count("stopped_early"),
                "trials_failed": out.count("failed"),
                "trial_epochs": out.trial_epochs,
            }
        )
        mlflow.set_tags(
            {
                "raylane.best_trial": best.trial_id,
                "raylane.best_run_id": best.run_id,
                "raylane.registered_version": result.version or "",
            }
        )
        mlflow.log_dict({"trials": [asdict(t) for t in trials]}, "sweep/trials.json")
    state.update(status="finished", best_trial=best.trial_id, version=result.version)
    state_file.write_text(json.dumps(state, indent=1))
    return out


def _job_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_job_id())


def _dead_jobs(job_ids: list[str]) -> set[str]:
    """Those of ``job_ids`` that this cluster knows as finished (its GCS job table)."""
    import ray

    try:
        table = ray._private.worker.global_worker.gcs_client.get_all_job_info()  # type: ignore[attr-defined]
    except Exception:  # the job table is internal API: without it, reclaim nothing
        log.debug("cannot read the Ray job table", exc_info=True)
        return set()
    known = {job.job_id.hex(): bool(job.is_dead) for job in table.values()}
    alive = [j for j in job_ids if known.get(j) is False and j != _job_id()]
    if alive:
        raise UserError(
            f"the sweep is still running in Ray job {alive[0]}",
            fix="wait for it, or stop that driver before resuming",
        )
    return {j for j in job_ids if known.get(j)}


def _reclaim(job_ids: list[str], name: str) -> None:
    """Remove the placement groups that the sweep's dead drivers left behind.

    A driver killed while a trial was starting can leave that trial's Ray Train placement group
    reserved after every actor of its job is gone (Ray Train's own cleaner had not registered it
    yet), and the resumed trials then wait forever for its CPUs. A placement group's id ends with
    the id of the job that created it; only groups of this sweep's own dead drivers are removed.
    """
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    dead = _dead_jobs(job_ids)
    if not dead:
        return
    for pg_id, info in placement_group_table().items():
        if info.get("state") != "REMOVED" and pg_id[-8:] in dead:
            log.warning("sweep %s: removing placement group %s left by its dead driver", name, pg_id)
            remove_placement_group(PlacementGroup(_pg_id(pg_id)))


def _pg_id(hex_id: str) -> Any:
    from ray._raylet import PlacementGroupID

    return PlacementGroupID(bytes.fromhex(hex_id))


def _summaries(
    cfg: ProjectConfig, results: list[Any], client: Any, experiment_id: str, name: str, val_key: str, mode: str
) -> list[TrialSummary]:
    runs = {
        r.data.tags.get("raylane.trial_id"): r
        for r in client.search_runs([experiment_id], filter_string=f"tags.`raylane.sweep` = '{name}'", max_results=5000)
        if r.data.tags.get("raylane.kind") == "trial"
    }
    out = []
    for r in results:
        trial_id = str(r.metrics.get("trial_id") or Path(r.path).name)
        history = r.metrics_dataframe
        best = None
        values = []
        if history is not None and val_key in history:
            values = [float(v) for v in history[val_key].dropna()]
        if (r.metrics or {}).get(_BEST_SCORE) is not None:
            values.append(float(r.metrics[_BEST_SCORE]))
        if values:
            best = max(values) if mode == "max" else min(values)
        run = runs.get(trial_id)
        outcome = run.data.tags.get("raylane.outcome", "not_run") if run is not None else "not_run"
        if r.error is not None:
            outcome = "failed"
        params = {k: v for k, v in (r.config or {}).items() if k in cfg.tune.space}
        out.append(
            TrialSummary(
                trial_id=trial_id,
                params=params,
                outcome=outcome,
                epochs=int(r.metrics.get("epochs_completed", 0) or 0),
                best=best,
                seconds=float(r.metrics.get("time_total_s", 0.0) or 0.0),
                run_id=run.info.run_id if run is not None else None,
                error=str(r.error).strip().splitlines()[-1][:300] if r.error is not None else None,
            )
        )
    return out


def _best_checkpoint(result: Any, val_key: str, mode: str) -> Any:
    """The trial's best-scoring kept checkpoint (Ray Train keeps the best ones by the same metric)."""
    import ray.train

    final = (result.metrics or {}).get(_BEST_PATH)
    if final and Path(final).exists():  # the trial ran to its end and named its best checkpoint
        return ray.train.Checkpoint(final)
    history = result.metrics_dataframe  # a trial the scheduler stopped: the best one it reported
    if history is not None and "checkpoint_path" in history and val_key in history:
        rows = history.dropna(subset=["checkpoint_path", val_key]).sort_values(val_key, ascending=mode == "min")
        for path in rows["checkpoint_path"]:
            if Path(path).exists():
                return ray.train.Checkpoint(path)
    raise RaylaneError(
        f"the best trial {result.metrics.get('trial_id')} has no checkpoint left",
        fix="raise train.checkpoints_to_keep",
    )
