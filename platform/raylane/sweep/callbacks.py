"""The sweep driver's Tune callbacks: every trial's MLflow run ended with its outcome, progress, and
the CPUs of trials killed as they started given back.

Tune pickles its callbacks into the experiment's state, so they hold only plain settings (the
config, the sweep's name, the metric); the progress listener of the running process is looked up
in `listeners` at each event. This module imports Ray Tune: the driver imports it when it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback

from raylane.config import ProjectConfig
from raylane.lineage import Tag
from raylane.sweep.reclaim import remove_orphans
from raylane.sweep.results import SweepProgress
from raylane.sweep.space import planned_trials
from raylane.sweep.trial import find_trial_run, outcome

__all__ = ["EndTrialRuns", "Progress", "RemoveOrphanGroups", "listeners", "make_callbacks"]


listeners: list[Callable[[SweepProgress], object]] = []
"""The listeners of the sweep running in this process (`sweep`'s ``on_progress``)."""


def make_callbacks(cfg: ProjectConfig, name: str, metric: str, mode: str) -> list[Any]:
    """The driver-side Tune callbacks of sweep ``name``."""
    return [EndTrialRuns(cfg, name), Progress(cfg, f"val_{metric}", mode), RemoveOrphanGroups()]


class RemoveOrphanGroups(Callback):  # type: ignore[misc]
    """Every few seconds of Tune's loop: `remove_orphans`, the placement groups of Ray Train
    controllers that Tune killed while they were starting (else reserved until the driver ends)."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s, self.last = every_s, 0.0  # wall-clock time: the callback outlives its process

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if time.time() - self.last >= self.every_s:
            self.last = time.time()
            remove_orphans()


class EndTrialRuns(Callback):  # type: ignore[misc]
    """Ends each trial's MLflow run with its outcome as the trial ends, including trials the
    scheduler stopped (whose own code never gets to say so): ``FINISHED`` or ``FAILED``."""

    def __init__(self, cfg: ProjectConfig, name: str) -> None:
        self.cfg, self.name = cfg, name

    def _end(self, trial: Any, how: str) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import RunTag

        client = MlflowClient(tracking_uri=self.cfg.mlflow_tracking_uri)
        run = find_trial_run(client, self.cfg, self.name, trial.trial_id)
        if run is None:  # the trial failed before its run existed
            return
        epochs = str((trial.last_result or {}).get("epochs_completed", 0))
        client.log_batch(run.info.run_id, tags=[RunTag(Tag.OUTCOME, how), RunTag(Tag.EPOCHS, epochs)])
        client.set_terminated(run.info.run_id, status="FAILED" if how == "failed" else "FINISHED")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._end(trial, outcome(trial, self.cfg.tune.scheduler.max_t))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._end(trial, "failed")


class Progress(Callback):  # type: ignore[misc]
    """Counts trials by state and tracks the best metric; tells `sweep`'s listener."""

    def __init__(self, cfg: ProjectConfig, val_key: str, mode: str) -> None:
        self.max_t = cfg.tune.scheduler.max_t
        self.expected = planned_trials(cfg)
        self.val_key, self.mode = val_key, mode

    def _best(self, trials: list[Any], trial: Any, latest: float | None) -> tuple[float | None, str | None]:
        best, best_trial = None, None
        for t in trials:
            values = [(getattr(t, "metric_analysis", {}) or {}).get(self.val_key, {}).get(self.mode)]
            if t is trial and latest is not None:  # Tune records this result after the callbacks
                values.append(latest)
            for value in values:
                if value is not None and (best is None or (value > best if self.mode == "max" else value < best)):
                    best, best_trial = value, t.trial_id
        return best, best_trial

    def _emit(
        self, trials: list[Any], event: str, trial: Any, now: str | None = None, latest: float | None = None
    ) -> None:
        # Tune calls back before it updates the trial's status: `now` is what `trial` has become.
        if not listeners:
            return
        states = [
            now if t is trial and now else outcome(t, self.max_t) if t.status == "TERMINATED" else t.status.lower()
            for t in trials
        ]
        best, best_trial = self._best(trials, trial, latest)
        status = SweepProgress(
            total=max(len(trials), self.expected),
            pending=states.count("pending"),
            running=states.count("running"),
            completed=states.count("completed"),
            stopped_early=states.count("stopped_early"),
            failed=states.count("failed"),
            metric=self.val_key,
            best=best,
            best_trial=best_trial,
            event=event,
        )
        for listener in listeners:
            listener(status)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._emit(trials, f"trial {trial.trial_id} started", trial, "running")

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        value = result.get(self.val_key)
        shown = f"{value:.4f}" if isinstance(value, float) else "?"
        epoch = result.get("epochs_completed")
        latest = value if isinstance(value, float) else None
        self._emit(trials, f"trial {trial.trial_id} epoch {epoch}: {self.val_key} {shown}", trial, latest=latest)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        how = outcome(trial, self.max_t)
        self._emit(trials, f"trial {trial.trial_id} {how.replace('_', ' ')}", trial, how)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._emit(trials, f"trial {trial.trial_id} failed", trial, "failed")
