"""What a sweep reports: per-trial summaries, the sweep's result, progress snapshots, the best checkpoint.

`summaries` reads each Tune result beside the trial's MLflow child run (its recorded outcome);
`best_checkpoint` finds the best trial's best kept checkpoint, also for a trial the scheduler
stopped early.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raylane.config import ProjectConfig
from raylane.errors import RaylaneError
from raylane.lineage import Tag
from raylane.sweep.space import decode_params
from raylane.sweep.trial import BEST_PATH, BEST_SCORE, trial_id_in
from raylane.training import TrainResult

__all__ = [
    "Rung",
    "SweepProgress",
    "SweepResult",
    "TrialSummary",
    "best_checkpoint",
    "rung_epochs",
    "rungs",
    "summaries",
    "trial_id_of",
]


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
    history: dict[int, float] = field(default_factory=dict)  # epochs completed → validation metric
    trained_epochs: int = 0  # epochs it trained (a PBT copy starts at its donor's epoch)


@dataclass
class Rung:
    """The sweep at one epoch milestone: how many trials reached it, and the best one there."""

    epoch: int
    reached: int
    best_trial: str | None
    best: float | None


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

    planned_epochs: int = 0  # every planned trial trained to `max_t`
    rungs: list[Rung] = field(default_factory=list)

    @property
    def trial_epochs(self) -> int:
        """Epochs trained, all trials together (the sweep's compute)."""
        return sum(t.trained_epochs for t in self.trials)

    @property
    def epochs_saved(self) -> int:
        """Trial-epochs the scheduler saved against training every planned trial to `max_t`."""
        return self.planned_epochs - self.trial_epochs

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


def trial_id_of(result: Any) -> str:
    """The Tune trial id of a result: from its folder (``run_trial_<id>_<n>_…``), which stays the
    trial's own when PBT copied another trial's last result into it."""
    return trial_id_in(Path(result.path).name) or str((result.metrics or {}).get("trial_id"))


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
        trial_id = trial_id_of(r)
        history, trained = _history(r, val_key, mode, copies=cfg.tune.scheduler.type == "pbt")
        run = runs.get(trial_id)
        outcome = run.data.tags.get(Tag.OUTCOME, "not_run") if run is not None else "not_run"
        if r.error is not None:
            outcome = "failed"
        out.append(
            TrialSummary(
                trial_id=trial_id,
                params=decode_params(cfg, r.config or {}),
                outcome=outcome,
                epochs=int(r.metrics.get("epochs_completed", 0) or 0),
                best=_best_value(r, val_key, mode),
                history=history,
                trained_epochs=trained,
                seconds=float(r.metrics.get("time_total_s", 0.0) or 0.0),
                run_id=run.info.run_id if run is not None else None,
                error=str(r.error).strip().splitlines()[-1][:300] if r.error is not None else None,
            )
        )
    return out


def _history(result: Any, val_key: str, mode: str, *, copies: bool) -> tuple[dict[int, float], int]:
    """A trial's metric at each epoch it completed (the best when it trained one twice) and how many
    epochs it trained (from its epoch reports, not its final word; ``copies``: the scheduler may
    start a trial from another's checkpoint, so only the reports count)."""
    frame = result.metrics_dataframe
    if frame is None or val_key not in frame or "epochs_completed" not in frame:
        return {}, 0
    if BEST_SCORE in frame:
        frame = frame[frame[BEST_SCORE].isna()]
    frame = frame.dropna(subset=[val_key, "epochs_completed"])
    pick = max if mode == "max" else min
    out: dict[int, float] = {}
    trained, last = 0, 0
    for epoch, value in zip(frame["epochs_completed"], frame[val_key], strict=True):
        key = int(epoch)
        out[key] = pick(out[key], float(value)) if key in out else float(value)
        # Epochs a trial trained but Tune never recorded (reported while its driver was dead, or
        # dropped by Ray Train) show as a jump; a PBT copy jumps to its donor's epoch untrained.
        trained += 1 if copies else max(1, key - last)
        last = key
    return out, trained


def rung_epochs(cfg: ProjectConfig) -> list[int]:
    """The epochs at which the scheduler compares trials: ASHA's milestones, PBT's perturbation
    points, and `max_t`."""
    sched = cfg.tune.scheduler
    marks = {sched.max_t}
    if sched.type == "asha":
        t = float(sched.grace_period)
        while t < sched.max_t:
            marks.add(int(t))
            t *= sched.reduction_factor
    elif sched.type == "pbt":
        marks |= set(range(sched.perturbation_interval, sched.max_t, sched.perturbation_interval))
    return sorted(marks)


def rungs(cfg: ProjectConfig, trials: list[TrialSummary], mode: str) -> list[Rung]:
    """At each of `rung_epochs`: the trials that reached it and the best of them there."""
    out = []
    for epoch in rung_epochs(cfg):
        there = [(t.history[epoch], t.trial_id) for t in trials if epoch in t.history]
        best = (max if mode == "max" else min)(there, default=None)
        out.append(Rung(epoch, len(there), best[1] if best else None, best[0] if best else None))
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
