"""The trial side of a sweep: one Tune trial drives one Ray Train run and owns one MLflow child run.

`run_trial` is the trainable Tune calls (a module-level function: Tune pickles it with its
`tune.with_parameters` arguments). Its Ray Train run is named after the trial, so a trial
restarted after its driver died resumes from its last checkpoint; its workers log per-epoch
metrics to the trial's child run themselves, exactly as in ``raylane train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raylane.config import ProjectConfig
from raylane.lineage import Tag
from raylane.sweep.space import trial_config
from raylane.training import Prepared, flat_params, make_trainer

__all__ = ["BEST_PATH", "BEST_SCORE", "find_trial_run", "outcome", "run_trial"]

BEST_PATH, BEST_SCORE = "best_checkpoint_path", "best_checkpoint_score"  # in a trial's final report


def run_trial(
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
                BEST_PATH: best.path,
                BEST_SCORE: float(kept.get(best.path, result.metrics)[f"val_{metric}"]),
            }
        )


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
