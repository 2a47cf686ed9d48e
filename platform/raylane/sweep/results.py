"""What a sweep reports: per-trial summaries, the sweep's result, progress snapshots, the best checkpoint.

`summaries` reads each Tune result beside the trial's MLflow child run (its recorded outcome);
`best_checkpoint` finds the best trial's best kept checkpoint, also for a trial the scheduler
stopped early.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raylane.config import ProjectConfig
from raylane.errors import RaylaneError
from raylane.lineage import Tag
from raylane.sweep.trial import BEST_PATH, BEST_SCORE
from raylane.training import TrainResult

__all__ = ["SweepProgress", "SweepResult", "TrialSummary", "best_checkpoint", "summaries"]


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


def summaries(
    cfg: ProjectConfig, results: list[Any], client: Any, experiment_id: str, name: str, val_key: str, mode: str
) -> list[TrialSummary]:
    """One `TrialSummary` per Tune result, with the outcome its MLflow child run recorded."""
    runs = {
        r.data.tags.get(Tag.TRIAL_ID): r
        for r in client.search_runs([experiment_id], filter_string=f"tags.`{Tag.SWEEP}` = '{name}'", max_results=5000)
        if r.data.tags.get(Tag.KIND) == "trial"
    }
    out = []
    for r in results:
        trial_id = str(r.metrics.get("trial_id") or Path(r.path).name)
        run = runs.get(trial_id)
        outcome = run.data.tags.get(Tag.OUTCOME, "not_run") if run is not None else "not_run"
        if r.error is not None:
            outcome = "failed"
        out.append(
            TrialSummary(
                trial_id=trial_id,
                params={k: v for k, v in (r.config or {}).items() if k in cfg.tune.space},
                outcome=outcome,
                epochs=int(r.metrics.get("epochs_completed", 0) or 0),
                best=_best_value(r, val_key, mode),
                seconds=float(r.metrics.get("time_total_s", 0.0) or 0.0),
                run_id=run.info.run_id if run is not None else None,
                error=str(r.error).strip().splitlines()[-1][:300] if r.error is not None else None,
            )
        )
    return out


def _best_value(result: Any, val_key: str, mode: str) -> float | None:
    """A trial's best reported value of the metric (its history and its final word)."""
    history = result.metrics_dataframe
    values = []
    if history is not None and val_key in history:
        values = [float(v) for v in history[val_key].dropna()]
    if (result.metrics or {}).get(BEST_SCORE) is not None:
        values.append(float(result.metrics[BEST_SCORE]))
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def best_checkpoint(result: Any, val_key: str, mode: str) -> Any:
    """The trial's best-scoring kept checkpoint (Ray Train keeps the best ones by the same metric)."""
    import ray.train

    final = (result.metrics or {}).get(BEST_PATH)
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
