"""The retrain policy, as pure functions: which triggers fire, the cooldown, and the verdict.

No Ray, no files, no clock: the monitor actor passes its config, a window's analysis, what it
knows of earlier retrains (`PolicyState`) and the time, and acts on the `Verdict`. The rules:

- triggers: at least ``triggers.drifted_features`` features drift against the champion's reference
  profile, in a window of at least ``triggers.min_rows`` rows (a few junk requests cannot retrain);
  the live metric (on at least ``min_labels`` labels, for ids the service issued) is worse than
  ``triggers.live_metric_below`` (below it for a metric to maximize, above it for one to minimize:
  `LiveMetric.breached`); ``triggers.every`` has elapsed
  since the last submission (or the monitor's start) — continuous training;
- with ``triggers.min_authenticated_share``, a window's drift and decay count only when at least
  that share of its rows came with the API key: below it they are skipped, and the verdict says
  why (anonymous traffic alone cannot retrain; the schedule still can);
- a trigger retrains unless a retrain is still in flight (one at a time) or the ``cooldown`` after
  the last submission has not ended; then it is skipped, and the verdict says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from raylane.config import MonitorConfig
from raylane.monitoring.analysis import WindowAnalysis

__all__ = ["PolicyState", "Verdict", "cooldown_end", "decide", "schedule_due", "triggers"]

SCHEDULE = "schedule:"  # how a schedule trigger's reason starts


@dataclass(frozen=True)
class PolicyState:
    """What the policy needs to know of the past (from the monitor's ``state.json``)."""

    started_at: datetime  # the monitor's first start: the schedule counts from it before any retrain
    last_submitted_at: datetime | None = None
    in_flight: str | None = None  # the job id of the retrain still running


@dataclass(frozen=True)
class Verdict:
    """``none`` (no trigger fired), ``retrain`` (submit one now) or ``skipped`` (a trigger fired, ``why`` not)."""

    action: Literal["none", "retrain", "skipped"]
    reasons: list[str] = field(default_factory=list)
    why: str | None = None


def triggers(m: MonitorConfig, analysis: WindowAnalysis | None, state: PolicyState, now: datetime) -> list[str]:
    """The reasons to retrain: one line per trigger that fires (none without a window but the schedule)."""
    t = m.triggers
    reasons = []
    if analysis is not None:
        drifted = analysis.drifted_features
        if t.drifted_features is not None and len(drifted) >= t.drifted_features and analysis.rows >= t.min_rows:
            reasons.append(f"drift: {len(drifted)} features drifted ({', '.join(drifted)})")
        live = analysis.live
        if live is not None and live.breached:
            reasons.append(f"decay: live {live.metric} {live.value:.4f} worse than {live.worse_than}")
    if t.every is not None and now - (state.last_submitted_at or state.started_at) >= t.every:
        reasons.append(f"{SCHEDULE} every {t.every}")
    return reasons


def cooldown_end(cooldown: timedelta, state: PolicyState, now: datetime) -> datetime | None:
    """When the cooldown after the last submission ends; None when it is over (or none was made)."""
    end = state.last_submitted_at + cooldown if state.last_submitted_at else None
    return end if end and now < end else None


def decide(m: MonitorConfig, analysis: WindowAnalysis | None, state: PolicyState, now: datetime) -> Verdict:
    """Retrain when a trigger fires, unless a retrain is in flight or the cooldown has not ended."""
    reasons = triggers(m, analysis, state, now)
    if not reasons:
        return Verdict("none")
    share = m.triggers.min_authenticated_share
    if analysis is not None and share is not None and analysis.authenticated_share < share:
        why = (
            f"{analysis.authenticated_share:.0%} of the window's {analysis.rows} rows came with the API key;"
            f" triggers.min_authenticated_share is {share:.0%}"
        )
        if not (scheduled := [r for r in reasons if r.startswith(SCHEDULE)]):
            return Verdict("skipped", reasons, why)
        reasons = scheduled
    if state.in_flight:
        return Verdict("skipped", reasons, f"retrain job {state.in_flight} is still running")
    end = cooldown_end(m.cooldown, state, now)
    if end:
        return Verdict("skipped", reasons, f"cooldown until {end.isoformat(timespec='seconds')}")
    return Verdict("retrain", reasons)


def schedule_due(m: MonitorConfig, state: PolicyState, now: datetime) -> bool:
    """The schedule fired and a retrain could start now. False while one could not, so the
    monitor's clock records no skip each tick; a window's decision still records those."""
    if m.triggers.every is None or state.in_flight or cooldown_end(m.cooldown, state, now):
        return False
    return any(r.startswith(SCHEDULE) for r in triggers(m, None, state, now))
