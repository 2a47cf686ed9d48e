"""The retrain policy without Ray: which triggers fire, the cooldown, one retrain in flight, the reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raylane.config import MonitorConfig, ProjectConfig, load_config
from raylane.monitoring.analysis import ColumnDrift, LiveMetric, WindowAnalysis, live_metric
from raylane.monitoring.policy import PolicyState, Verdict, cooldown_end, decide, schedule_due, triggers
from raylane.testing import example_config_path

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
STARTED = PolicyState(started_at=T0)


def _monitor(**triggers_: object) -> MonitorConfig:
    spec = {"drifted_features": 2, "live_metric_below": None, "every": None} | triggers_
    return MonitorConfig.model_validate({"triggers": spec, "cooldown": "30m"})


def _window(drifted: list[str], steady: tuple[str, ...] = (), live: LiveMetric | None = None) -> WindowAnalysis:
    drift = [ColumnDrift(c, "ks", 0.4, 0.001, True) for c in drifted]
    drift += [ColumnDrift(c, "ks", 0.02, 0.6, False) for c in steady]
    return WindowAnalysis(rows=500, reference_version="3", drift=drift, live=live)


# ----- drift


def test_drift_on_k_features_fires_and_names_them() -> None:
    reasons = triggers(_monitor(), _window(["tenure_months", "monthly_charges"], ("plan",)), STARTED, T0)
    assert reasons == ["drift: 2 features drifted (tenure_months, monthly_charges)"]


def test_drift_on_fewer_than_k_features_does_not_fire() -> None:
    assert triggers(_monitor(), _window(["tenure_months"], ("plan", "monthly_charges")), STARTED, T0) == []
    assert decide(_monitor(), _window(["tenure_months"]), STARTED, T0) == Verdict("none")


def test_a_drifted_prediction_is_not_a_drifted_feature() -> None:
    window = _window(["tenure_months", "prediction"])
    assert window.drifted_features == ["tenure_months"] and window.prediction_drifted
    assert triggers(_monitor(), window, STARTED, T0) == []


def test_drift_trigger_off_never_fires() -> None:
    assert triggers(_monitor(drifted_features=None), _window(["a", "b", "c", "d"]), STARTED, T0) == []


# ----- live metric floor (the breach is computed with the metric's direction, then the policy reads it)


@pytest.fixture
def cfg(tmp_path: Path) -> ProjectConfig:
    env = {"CHURN_DATA": str(tmp_path / "data"), "RAYLANE_STORAGE": str(tmp_path / "store")}
    return load_config(example_config_path(), ["monitor.triggers.live_metric_below=0.7"], env=env)


def _labelled(n: int, right: bool) -> pd.DataFrame:
    y = np.arange(n) % 2
    p = np.where(y == 1, 0.9, 0.1) if right else np.where(y == 1, 0.1, 0.9)
    return pd.DataFrame({"prediction": p, "label": y.astype(float)})


def test_live_metric_to_maximize_fires_below_its_floor(cfg: ProjectConfig) -> None:
    good = live_metric(cfg, _labelled(40, right=True))
    bad = live_metric(cfg, _labelled(40, right=False))
    assert (good.metric, good.value, good.labelled, good.breached) == ("roc_auc", 1.0, 40, False)
    assert (bad.value, bad.breached) == (0.0, True)
    assert triggers(cfg.monitor, WindowAnalysis(40, "3", live=good), STARTED, T0) == []
    assert triggers(cfg.monitor, WindowAnalysis(40, "3", live=bad), STARTED, T0) == [
        "decay: live roc_auc 0.0000 worse than 0.7"
    ]


def test_live_metric_to_minimize_fires_above_its_ceiling(tmp_path: Path) -> None:
    env = {"CHURN_DATA": str(tmp_path / "data"), "RAYLANE_STORAGE": str(tmp_path / "store")}
    overrides = ["registry.promotion.metric=log_loss", "monitor.triggers.live_metric_below=0.5"]
    cfg = load_config(example_config_path(), overrides, env=env)
    good = live_metric(cfg, _labelled(40, right=True))
    bad = live_metric(cfg, _labelled(40, right=False))
    assert good.metric == "log_loss" and good.value == pytest.approx(-np.log(0.9)) and not good.breached
    assert bad.value == pytest.approx(-np.log(0.1)) and bad.breached
    assert triggers(cfg.monitor, WindowAnalysis(40, "3", live=bad), STARTED, T0) == [
        "decay: live log_loss 2.3026 worse than 0.5"
    ]


def test_too_few_labels_give_no_live_metric_and_no_trigger(cfg: ProjectConfig) -> None:
    few = live_metric(cfg, _labelled(cfg.monitor.min_labels - 1, right=False))
    assert few.value is None and not few.breached and few.labelled == cfg.monitor.min_labels - 1
    assert triggers(cfg.monitor, WindowAnalysis(29, "3", live=few), STARTED, T0) == []


# ----- schedule


def test_schedule_counts_from_the_start_then_from_the_last_submission() -> None:
    m = _monitor(drifted_features=None, every="1h")
    assert not schedule_due(m, STARTED, T0 + timedelta(minutes=59))
    assert schedule_due(m, STARTED, T0 + timedelta(hours=1))
    assert triggers(m, None, STARTED, T0 + timedelta(hours=1)) == ["schedule: every 1:00:00"]
    submitted = PolicyState(started_at=T0, last_submitted_at=T0 + timedelta(hours=1))
    assert not schedule_due(m, submitted, T0 + timedelta(hours=1, minutes=59))
    assert schedule_due(m, submitted, T0 + timedelta(hours=2))


def test_schedule_is_not_due_while_a_retrain_runs_or_cools_down() -> None:
    m = _monitor(drifted_features=None, every="10m")  # shorter than the 30 min cooldown
    running = PolicyState(started_at=T0, in_flight="raylane-retrain-churn-1")
    assert not schedule_due(m, running, T0 + timedelta(hours=5))
    cooling = PolicyState(started_at=T0, last_submitted_at=T0)
    assert not schedule_due(m, cooling, T0 + timedelta(minutes=20))  # the schedule fired, the cooldown holds
    assert schedule_due(m, cooling, T0 + timedelta(minutes=30))
    assert not schedule_due(_monitor(), STARTED, T0 + timedelta(days=30))  # no schedule configured


# ----- cooldown, one in flight, the verdict


def test_cooldown_blocks_then_allows_after_its_end() -> None:
    m = _monitor()
    window = _window(["a", "b"])
    state = PolicyState(started_at=T0, last_submitted_at=T0)
    assert cooldown_end(m.cooldown, state, T0 + timedelta(minutes=10)) == T0 + timedelta(minutes=30)
    inside = decide(m, window, state, T0 + timedelta(minutes=10))
    assert inside == Verdict(
        "skipped", ["drift: 2 features drifted (a, b)"], "cooldown until 2026-01-01T12:30:00+00:00"
    )
    assert cooldown_end(m.cooldown, state, T0 + timedelta(minutes=30)) is None
    assert decide(m, window, state, T0 + timedelta(minutes=30)).action == "retrain"
    assert cooldown_end(m.cooldown, STARTED, T0) is None  # nothing submitted yet: no cooldown


def test_one_retrain_in_flight_blocks_a_second_even_after_the_cooldown() -> None:
    state = PolicyState(started_at=T0, last_submitted_at=T0, in_flight="raylane-retrain-churn-7")
    verdict = decide(_monitor(), _window(["a", "b", "c"]), state, T0 + timedelta(days=1))
    assert verdict.action == "skipped"
    assert verdict.why == "retrain job raylane-retrain-churn-7 is still running"
    assert verdict.reasons == ["drift: 3 features drifted (a, b, c)"]


def test_in_flight_is_named_before_the_cooldown() -> None:
    state = PolicyState(started_at=T0, last_submitted_at=T0, in_flight="job-9")
    assert (
        decide(_monitor(), _window(["a", "b"]), state, T0 + timedelta(minutes=1)).why
        == "retrain job job-9 is still running"
    )


def test_every_reason_is_given_in_order() -> None:
    m = _monitor(live_metric_below=0.7, every="1h")
    live = LiveMetric("roc_auc", 0.61234, 80, 0.7, breached=True)
    verdict = decide(m, _window(["a", "b"], live=live), STARTED, T0 + timedelta(hours=2))
    assert verdict == Verdict(
        "retrain",
        ["drift: 2 features drifted (a, b)", "decay: live roc_auc 0.6123 worse than 0.7", "schedule: every 1:00:00"],
    )


def test_a_small_window_never_triggers_a_retrain() -> None:
    """Junk requests that close a time window of a few rows cannot retrain, however they drift."""
    small = WindowAnalysis(rows=7, reference_version="3", drift=_window(["a", "b", "c"]).drift)
    assert triggers(_monitor(min_rows=100), small, STARTED, T0) == []
    assert triggers(_monitor(min_rows=5), small, STARTED, T0) == ["drift: 3 features drifted (a, b, c)"]


def test_anonymous_traffic_alone_cannot_retrain() -> None:
    """Below ``min_authenticated_share`` a window's drift and decay are skipped, saying why; the
    schedule still retrains; at or above it, drift retrains as before."""
    m = _monitor(min_authenticated_share=0.8, every="1h")
    drift = _window(["a", "b"]).drift
    anonymous = WindowAnalysis(rows=500, reference_version="3", authenticated_rows=100, drift=drift)
    verdict = decide(m, anonymous, STARTED, T0)
    assert verdict.action == "skipped" and verdict.reasons == ["drift: 2 features drifted (a, b)"]
    assert verdict.why == (
        "20% of the window's 500 rows came with the API key; triggers.min_authenticated_share is 80%"
    )
    later = T0 + timedelta(hours=2)  # the schedule is due: it retrains, for the schedule alone
    assert decide(m, anonymous, STARTED, later) == Verdict("retrain", ["schedule: every 1:00:00"])
    keyed = WindowAnalysis(rows=500, reference_version="3", authenticated_rows=400, drift=drift)
    assert decide(m, keyed, STARTED, T0) == Verdict("retrain", ["drift: 2 features drifted (a, b)"])
    assert decide(_monitor(), anonymous, STARTED, T0).action == "retrain"  # no share required: as before
