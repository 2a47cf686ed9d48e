"""The trial side of a sweep: one Tune trial drives one Ray Train run and owns one MLflow child run.

`run_trial` is the trainable Tune calls (a module-level function: Tune pickles it with its
`tune.with_parameters` arguments). Its Ray Train run is named after the trial, so a trial
restarted after its driver died resumes from its last checkpoint; its workers log per-epoch
metrics to the trial's child run themselves, exactly as in ``raylane train``.

Under PBT, Tune must hold each trial's checkpoints to copy them into weaker trials, so every
epoch's report reaches Tune with its checkpoint (`ForwardReports`, which waits until Tune stored
it). A trial Tune restarts from a checkpoint (PBT's copy of a stronger trial, with mutated params)
starts a new Ray Train run from it: model, optimizer state, epoch and early-stopping state carry
over, the learning rate and weight decay are the new ones.
"""

from __future__ import annotations

import hashlib
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any

from ray.train.v2.api.callback import UserCallback

from raylane.config import ProjectConfig
from raylane.lineage import Tag
from raylane.sweep.space import trial_config
from raylane.training import Prepared, flat_params, make_trainer

__all__ = ["BEST_PATH", "BEST_SCORE", "ForwardReports", "find_trial_run", "outcome", "run_trial"]

BEST_PATH, BEST_SCORE = "best_checkpoint_path", "best_checkpoint_score"  # in a trial's final report


def run_trial(
    config: dict[str, Any], *, base: dict[str, Any], prep: Prepared, trials_dir: str, sweep: str, parent_run_id: str
) -> None:
    """One Tune trial: a Ray Train run of the trial's config, reporting every epoch to Tune.

    Its workers log per-epoch metrics to the trial's MLflow child run themselves, exactly as in
    `raylane train`, so an interrupted trial's epochs are all recorded even if the sweep's driver
    died before it saw them."""
    import ray.tune

    cfg = trial_config(ProjectConfig.model_validate(base), config)
    trial_id = ray.tune.get_context().get_trial_id()
    run_id = _trial_run(cfg, sweep, parent_run_id, trial_id)
    start = ray.tune.get_checkpoint()  # only under PBT: the checkpoint Tune restarts this trial from
    # Named after the trial: restarted after a driver crash, the run resumes from its last checkpoint.
    name = f"trial-{trial_id}"
    if start is not None:  # a new run from that checkpoint (one name per starting point)
        name += "-from-" + hashlib.sha256(str(start.path).encode()).hexdigest()[:10]
    if cfg.tune.scheduler.type == "pbt":
        _log_pbt_params(cfg, run_id, trial_id, started_from=start)
        result = _fit_forwarding(cfg, prep, name, Path(trials_dir), run_id, start)
    else:
        from ray.tune.integration.ray_train import TuneReportCallback

        trainer = make_trainer(
            cfg, prep, name=name, storage_path=Path(trials_dir), run_id=run_id, callbacks=[TuneReportCallback()]
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
                BEST_PATH: best.path,
                BEST_SCORE: float(kept.get(best.path, result.metrics)[f"val_{metric}"]),
            }
        )


class ForwardReports(UserCallback):  # type: ignore[misc]
    """On the Ray Train controller: hands each report and its checkpoint's path to the trial's
    function, and waits until Tune has stored the checkpoint (so Ray Train cannot delete it first)."""

    def __init__(self, reports: Any, stored: Any) -> None:
        self.reports, self.stored = reports, stored

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        self.reports.put((metrics[0], checkpoint.path if checkpoint else None))
        self.stored.get()


def _fit_forwarding(cfg: ProjectConfig, prep: Prepared, name: str, trials_dir: Path, run_id: str, start: Any) -> Any:
    """The trial's Ray Train run, every report passed on to Tune with its checkpoint."""
    import ray.tune
    from ray.util.queue import Empty, Queue

    reports, stored = Queue(1, actor_options={"num_cpus": 0}), Queue(1, actor_options={"num_cpus": 0})
    trainer = make_trainer(
        cfg,
        prep,
        name=name,
        storage_path=trials_dir,
        run_id=run_id,
        callbacks=[ForwardReports(reports, stored)],
        start_from=str(start.path) if start is not None else None,
    )
    outcome: queue.Queue[tuple[bool, Any]] = queue.Queue()

    def fit() -> None:
        try:
            outcome.put((True, trainer.fit()))
        except BaseException as exc:  # handed to the trial's thread, which raises it
            outcome.put((False, exc))

    worker = threading.Thread(target=fit, name=f"{name}-fit", daemon=True)
    worker.start()
    while worker.is_alive() or not reports.empty():
        try:
            metrics, path = reports.get(timeout=0.5)
        except Empty:
            continue
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint(path) if path else None)
        stored.put(True)
    ok, value = outcome.get()
    if not ok:
        raise value
    return value


def _log_pbt_params(cfg: ProjectConfig, run_id: str, trial_id: str, *, started_from: Any) -> None:
    """A PBT trial's params as metrics (``pbt.<param>``), once per start: its MLflow params are
    the ones it started with, and PBT changes them each time it copies another trial into it
    (the ``raylane.pbt.started_from`` tag names that trial's checkpoint). A trial PBT paused to
    let the others catch up starts again from its own checkpoint, with its own params: a start,
    not a copy."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    client = MlflowClient(tracking_uri=cfg.mlflow_tracking_uri)
    starts = len(client.get_metric_history(run_id, "pbt.starts")) if started_from is not None else 0
    now = int(time.time() * 1000)
    values = {f"pbt.{k}": float(v) for k, v in flat_params(cfg).items() if k in cfg.tune.space}
    metrics = [Metric(k, v, now, starts) for k, v in {**values, "pbt.starts": starts + 1}.items()]
    copied = started_from is not None and trial_id_in(Path(started_from.path).parent.name) != trial_id
    tags = [RunTag(Tag.PBT_STARTED_FROM, str(started_from.path))] if copied else []
    client.log_batch(run_id, metrics=metrics, tags=tags)


def trial_id_in(folder: str) -> str | None:
    """The Tune trial id in a trial folder's name (``run_trial_<id>_<n>_…``), or None."""
    found = re.match(r"run_trial_([0-9a-f]+(?:_\d{5})?)_\d+_", folder)
    return found.group(1) if found else None


def find_trial_run(client: Any, cfg: ProjectConfig, sweep: str, trial_id: str) -> Any | None:
    """A trial's MLflow child run, or None before it exists."""
    experiment = client.get_experiment_by_name(cfg.mlflow_experiment)
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{Tag.SWEEP}` = '{sweep}' and tags.`{Tag.TRIAL_ID}` = '{trial_id}'",
    )
    return found[0] if found else None


def _trial_run(cfg: ProjectConfig, sweep: str, parent_run_id: str, trial_id: str) -> str:
    """The trial's MLflow run, a child of the sweep's: created with the trial's full parameter set,
    or found again (and marked running) when a resumed sweep restarts the trial."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    client = MlflowClient(tracking_uri=cfg.mlflow_tracking_uri)
    found = find_trial_run(client, cfg, sweep, trial_id)
    if found is not None:
        client.update_run(found.info.run_id, status="RUNNING")
        return str(found.info.run_id)
    experiment = client.get_experiment_by_name(cfg.mlflow_experiment)
    assert experiment is not None  # the sweep's driver created it
    tags = {"mlflow.parentRunId": parent_run_id, Tag.SWEEP: sweep, Tag.TRIAL_ID: trial_id}
    run = client.create_run(experiment.experiment_id, run_name=f"{sweep}/{trial_id}", tags={**tags, Tag.KIND: "trial"})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in flat_params(cfg).items()])
    return str(run.info.run_id)


def outcome(trial: Any, max_t: int) -> str:
    """How a Tune trial ended: ``completed``, ``stopped_early`` or ``failed``."""
    if trial.status == "ERROR":
        return "failed"
    last = trial.last_result or {}
    # Called as a trial ends (its status may not say so yet). Tune marks every ended trial `done`,
    # whether its function returned or the scheduler stopped it, so the epochs tell: a trial that
    # stopped before `max_t` was stopped early (by ASHA, or by its own `train.early_stopping`).
    return "completed" if last.get("epochs_completed", 0) >= max_t else "stopped_early"
