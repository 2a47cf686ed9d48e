"""The sweep's driver: name and state, the parent MLflow run, the Tuner, and the best trial's registration.

Everything a sweep keeps lives under ``<storage_root>/sweeps/<name>/``: ``sweep.json`` (the
state: identity of the config, data hash, parent run, the drivers that ran it, status), Tune's
experiment (``tune/``) and the trials' Ray Train runs (``trials/``).
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
from raylane.lineage import Tag
from raylane.sweep.reclaim import job_id, reclaim, remove_orphans
from raylane.sweep.results import (
    SweepProgress,
    SweepResult,
    TrialSummary,
    best_checkpoint,
    rungs,
    summaries,
    trial_id_of,
)
from raylane.sweep.search import first_points, scheduler, search_settings, searcher
from raylane.sweep.space import concurrency, planned_trials, search_space, trial_config
from raylane.sweep.trial import run_trial
from raylane.training import Prepared, TrainResult, ensure_experiment, finish, log_run_header, prepare

__all__ = ["latest_sweep", "sweep", "sweeps_dir"]

log = logging.getLogger(__name__)

_STATE = "sweep.json"
# A trial's own function only drives its Ray Train run, whose workers reserve the real resources; it
# takes no CPU (Tune needs some resource in a trial's bundle: one byte of memory).
_TRIAL_RESOURCES: dict[str, float] = {"cpu": 0, "memory": 1}
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
_TUNE_SAVE_S = 2


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
    started = time.perf_counter()
    _check_request(cfg, name)
    state = _SweepState.resumed(cfg, name) if resume else _SweepState.new(cfg, name)
    if resume:
        reclaim(state.doc.get("drivers", []), state.name)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune saves its experiment state at most every 10 s by default; what it did since is lost to a
    # driver that dies (a trial it just started, with its searcher's suggestion). Every 2 s narrows that.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(_TUNE_SAVE_S))
    prep = prepare(cfg, step=step)
    experiment = ensure_experiment(cfg)
    parent_run_id = _open_parent(cfg, prep, experiment.experiment_id, state)
    slots = concurrency(cfg)
    tuner = _tuner(cfg, prep, state.name, parent_run_id, resume=resume, slots=slots, step=step)
    results, tune_seconds = _fit(tuner, on_progress, verbose)
    return _conclude(
        cfg,
        prep,
        state,
        results,
        experiment_id=experiment.experiment_id,
        parent_run_id=parent_run_id,
        register=register,
        step=step,
        timing=(started, tune_seconds, slots),
    )


def _check_request(cfg: ProjectConfig, name: str | None) -> None:
    if not cfg.tune.space:
        raise UserError(
            "tune.space is empty: a sweep needs at least one parameter to search",
            fix="add e.g. `train.learning_rate: {type: loguniform, low: 0.0003, high: 0.01}` under tune.space",
        )
    if name is not None and not re.fullmatch(_NAME, name):
        raise UserError(f"sweep name {name!r} is not allowed", fix="use letters, digits, `_`, `.` and `-` (up to 100)")


def _identity(cfg: ProjectConfig) -> str:
    """What a resumed sweep must share with the one it resumes: everything but how Ray is reached."""
    doc = cfg.model_dump(mode="json")
    doc["backends"].pop("ray")
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass
class _SweepState:
    """``sweep.json``: what a resume needs to know about the sweep."""

    name: str
    file: Path
    doc: dict[str, Any]

    @classmethod
    def new(cls, cfg: ProjectConfig, name: str | None) -> _SweepState:
        name = name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        if (sweeps_dir(cfg) / name).exists():
            raise UserError(f"a sweep named {name!r} already exists", fix="pick another name, or pass --resume")
        doc = {
            "name": name,
            "started": time.time(),
            "status": "running",
            "identity": _identity(cfg),
            "config": cfg.model_dump(mode="json"),
        }
        return cls(name, sweeps_dir(cfg) / name / _STATE, doc)

    @classmethod
    def resumed(cls, cfg: ProjectConfig, name: str | None) -> _SweepState:
        name = name or latest_sweep(cfg, unfinished=True)
        if name is None or not (sweeps_dir(cfg) / name / _STATE).exists():
            raise UserError(
                f"no {'sweep named ' + repr(name) if name else 'unfinished sweep'} to resume under {sweeps_dir(cfg)}",
                fix="start one with `raylane sweep CONFIG`",
            )
        file = sweeps_dir(cfg) / name / _STATE
        doc = json.loads(file.read_text())
        if doc.get("status") == "finished":
            raise UserError(f"sweep {name!r} already finished", fix="start a new one with `raylane sweep CONFIG`")
        if doc["identity"] != _identity(cfg):
            raise UserError(
                f"the config differs from the one sweep {name!r} started with",
                fix="resume with the same config and --set values (backends.ray may differ), or start a new sweep",
            )
        return cls(name, file, doc)

    @property
    def folder(self) -> Path:
        return self.file.parent

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.file.write_text(json.dumps(self.doc, indent=1))


def _open_parent(cfg: ProjectConfig, prep: Prepared, experiment_id: str, state: _SweepState) -> str:
    """The sweep's parent MLflow run (made on the first run, marked running again on a resume);
    records this driver in the state. A resume on other data is refused."""
    import mlflow
    from mlflow import MlflowClient

    doc, data_hash = state.doc, prep.lineage.data_hash
    if doc.setdefault("data_hash", data_hash) != data_hash:
        raise UserError(
            f"the training data changed since sweep {state.name!r} started"
            f" (data hash {doc['data_hash']} → {data_hash})",
            fix="resume only on the data the sweep started with, or start a new sweep",
        )
    if "parent_run_id" not in doc:
        with mlflow.start_run(experiment_id=experiment_id, run_name=state.name) as parent:
            log_run_header(cfg, prep.lineage, {Tag.KIND: "sweep", Tag.SWEEP: state.name})
            mlflow.log_dict({k: v.model_dump(mode="json") for k, v in cfg.tune.space.items()}, "sweep/space.json")
            settings = search_settings(cfg)
            mlflow.log_dict(settings, "sweep/search.json")
            mlflow.log_params({f"sweep.{k}": v for k, v in settings.items()})
        doc["parent_run_id"] = parent.info.run_id
    doc["drivers"] = [*doc.get("drivers", []), job_id()]
    state.save()
    MlflowClient(tracking_uri=cfg.mlflow_tracking_uri).update_run(doc["parent_run_id"], status="RUNNING")
    return str(doc["parent_run_id"])


def _tuner(
    cfg: ProjectConfig,
    prep: Prepared,
    name: str,
    parent_run_id: str,
    *,
    resume: bool,
    slots: int,
    step: Callable[[str], object],
) -> Any:
    """The Tuner: restored from the sweep folder on a resume, else a new one over the search space."""
    from ray import tune

    from raylane.sweep.callbacks import make_callbacks

    sweep_dir = sweeps_dir(cfg) / name
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
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
        return tune.Tuner.restore(str(tune_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    search, sched = cfg.tune.search.type, cfg.tune.scheduler.type
    step(f"sweep {name}: {planned_trials(cfg)} trial(s), {slots} at a time, {search} search, {sched} scheduler")
    return tune.Tuner(
        trainable,
        param_space=search_space(cfg),
        tune_config=tune.TuneConfig(
            metric=f"val_{prep.metric}",
            mode=prep.mode,
            num_samples=cfg.tune.num_samples,
            scheduler=scheduler(cfg),
            search_alg=searcher(cfg, slots, first_points(cfg, step=step)),
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(sweep_dir),
            verbose=0,
            callbacks=make_callbacks(cfg, name, prep.metric, prep.mode),
            failure_config=tune.FailureConfig(max_failures=0),
            # Under PBT Tune holds every epoch's checkpoint (copied into other trials; never deleted:
            # Tune's own clean-up would delete a copied checkpoint from under the trial using it).
        ),
    )


def _fit(tuner: Any, on_progress: Callable[[SweepProgress], object] | None, verbose: bool) -> tuple[list[Any], float]:
    """Run the trials (telling ``on_progress``); their results and how long the phase took."""
    from raylane.sweep.callbacks import listeners

    if on_progress is not None:
        listeners.append(on_progress)
    tune_output = io.StringIO()
    tune_started = time.perf_counter()
    try:
        # Tune prints its own banner and tables on stdout even when told to be silent.
        with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(tune_output):
            grid = tuner.fit()
        results = [grid[i] for i in range(len(grid))]
    finally:
        if on_progress is not None:
            listeners.remove(on_progress)
        log.debug("Ray Tune's output:\n%s", tune_output.getvalue())
        remove_orphans()  # what Tune's last kills left (a Ctrl-C as a trial started)
    return results, time.perf_counter() - tune_started


def _conclude(
    cfg: ProjectConfig,
    prep: Prepared,
    state: _SweepState,
    results: list[Any],
    *,
    experiment_id: str,
    parent_run_id: str,
    register: bool,
    step: Callable[[str], object],
    timing: tuple[float, float, int],
) -> SweepResult:
    """After the trials: stop on an interruption, else register the best trial and record the sweep."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cfg.mlflow_tracking_uri)
    val_key, mode = f"val_{prep.metric}", prep.mode
    trials = summaries(cfg, results, client, experiment_id, state.name, val_key, mode)
    _end_lost_runs(client, experiment_id, state.name, {t.trial_id for t in trials})
    _stop_if_interrupted(cfg, state.name, results, trials, client, parent_run_id)
    best = _best_trial(state.name, trials, client, parent_run_id, val_key, mode)
    best_result = next(r for r in results if trial_id_of(r) == best.trial_id)
    result = _register_best(cfg, prep, best, best_checkpoint(best_result, val_key, mode), register=register, step=step)
    started, tune_seconds, slots = timing
    elapsed = time.perf_counter() - started
    out = SweepResult(
        state.name,
        parent_run_id,
        prep.metric,
        mode,
        trials,
        best,
        result,
        slots,
        elapsed,
        tune_seconds,
        planned_epochs=planned_trials(cfg) * cfg.tune.scheduler.max_t,
        rungs=rungs(cfg, trials, mode),
    )
    _log_parent(out, result)
    state.doc.update(status="finished", best_trial=best.trial_id, version=result.version)
    state.save()
    return out


def _end_lost_runs(client: Any, experiment_id: str, name: str, known: set[str]) -> None:
    """Trial runs that Tune does not know: trials a driver started after Tune last saved its state,
    then died. The resumed Tune never runs them again (their searcher suggestion went with the
    driver), so their runs end ``KILLED`` with outcome ``lost`` rather than stay ``RUNNING``."""
    from mlflow.entities import RunTag

    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{Tag.SWEEP}` = '{name}' and tags.`{Tag.KIND}` = 'trial'",
        max_results=5000,
    )
    for run in found:
        if run.data.tags.get(Tag.TRIAL_ID) in known or run.data.tags.get(Tag.OUTCOME) == "lost":
            continue
        note = (
            "Started by a sweep driver that died before Ray Tune saved this trial in its experiment state;"
            " the resumed sweep does not know it and never ran it again."
        )
        client.log_batch(run.info.run_id, tags=[RunTag(Tag.OUTCOME, "lost"), RunTag("mlflow.note.content", note)])
        client.set_terminated(run.info.run_id, status="KILLED")
        log.warning("sweep %s: trial %s was lost with a dead driver; its run is marked KILLED", name, run.info.run_id)


def _stop_if_interrupted(
    cfg: ProjectConfig, name: str, results: list[Any], trials: list[TrialSummary], client: Any, parent_run_id: str
) -> None:
    """Ctrl-C: Tune saved its state and returned early; the runs are marked killed and the sweep says so."""
    # Tune marks every trial that ended `done` (finished or stopped by the scheduler), or errored.
    unfinished = [r for r in results if not (r.error or (r.metrics or {}).get("done"))]
    if not unfinished and len(results) >= planned_trials(cfg):
        return
    stopped = {trial_id_of(r) for r in unfinished}
    for t in trials:
        if t.run_id is not None and t.trial_id in stopped:
            client.set_terminated(t.run_id, status="KILLED")
    client.set_terminated(parent_run_id, status="KILLED")
    raise SweepInterrupted(
        f"sweep {name} interrupted with {len(results) - len(unfinished)} of {planned_trials(cfg)} trials done;"
        " its state is saved",
        fix=f"`raylane sweep CONFIG --resume --name {name}` continues it",
    )


def _best_trial(
    name: str, trials: list[TrialSummary], client: Any, parent_run_id: str, val_key: str, mode: str
) -> TrialSummary:
    scored = [t for t in trials if t.best is not None and not math.isnan(t.best)]
    if not scored:
        client.set_terminated(parent_run_id, status="FAILED")
        errors = "; ".join(f"{t.trial_id}: {t.error}" for t in trials if t.error)
        raise RaylaneError(f"sweep {name}: no trial reported {val_key}", fix=f"see the trial errors: {errors[:500]}")
    return max(scored, key=lambda t: (t.best or 0.0) if mode == "max" else -(t.best or 0.0))


def _register_best(
    cfg: ProjectConfig,
    prep: Prepared,
    best: TrialSummary,
    checkpoint: Any,
    *,
    register: bool,
    step: Callable[[str], object],
) -> TrainResult:
    """The best trial's model, evaluated and logged in its own run, registered and gated like ``raylane train``."""
    import mlflow

    best_cfg = trial_config(cfg, best.params)
    assert best.run_id is not None
    with mlflow.start_run(run_id=best.run_id):
        log_run_header(best_cfg, prep.lineage, params=False)  # the trial logged its parameters
        return finish(
            best_cfg, prep, checkpoint, best.run_id, epochs=best.epochs, history=[], register=register, step=step
        )


def _log_parent(out: SweepResult, result: TrainResult) -> None:
    """The sweep's summary on its parent run: best metrics, trial counts, the registered version."""
    import mlflow

    val_key, best = f"val_{out.metric}", out.best
    with mlflow.start_run(run_id=out.parent_run_id):
        mlflow.log_metrics(
            {
                f"best_{val_key}": best.best or float("nan"),
                **{f"best_holdout_{k}": v for k, v in result.metrics.items()},
                "trials_completed": out.count("completed"),
                "trials_stopped_early": out.count("stopped_early"),
                "trials_failed": out.count("failed"),
                "trial_epochs": out.trial_epochs,
                "trial_epochs_saved": out.epochs_saved,
            }
        )
        mlflow.set_tags(
            {
                Tag.BEST_TRIAL: best.trial_id,
                Tag.BEST_RUN_ID: best.run_id or "",
                Tag.REGISTERED_VERSION: result.version or "",
            }
        )
        mlflow.log_dict({"trials": [asdict(t) for t in out.trials]}, "sweep/trials.json")
        mlflow.log_dict({"rungs": [asdict(r) for r in out.rungs]}, "sweep/rungs.json")
