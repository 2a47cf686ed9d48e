"""The example data: deterministic, with a real signal, missing values and a drift knob."""

from __future__ import annotations

import numpy as np
import pandas as pd

from raylane.examples.churn import ChurnDataSpec, generate


def test_same_seed_same_data_other_seed_other_data() -> None:
    spec = ChurnDataSpec(customers=200, days=40, labels=500)
    a, b = generate(spec), generate(spec)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
    c = generate(ChurnDataSpec(customers=200, days=40, labels=500, seed=8))
    assert not a["labels"].equals(c["labels"])


def test_shapes_types_and_missing_values() -> None:
    data = generate(ChurnDataSpec(customers=500, days=60, labels=3000))
    profiles, activity, labels = data["profiles"], data["activity"], data["labels"]
    assert len(labels) == 3000
    assert set(profiles["plan"]) == {"basic", "standard", "premium"}
    assert 0.03 < profiles["monthly_charges"].isna().mean() < 0.2
    assert 0.01 < activity["days_since_last_login"].isna().mean() < 0.1
    assert str(activity["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    # the slow view changes about monthly, the fast one most days
    assert len(activity) / 500 > 10 * len(profiles) / 500
    assert 0.15 < labels["churned"].mean() < 0.6


def test_drift_shifts_features_and_the_label_relationship() -> None:
    base = generate(ChurnDataSpec(customers=1500, days=80, labels=8000))
    drifted = generate(ChurnDataSpec(customers=1500, days=80, labels=8000, drift_start_day=40))
    cut = pd.Timestamp("2025-02-10", tz="UTC")
    before = base["activity"][base["activity"]["event_timestamp"] >= cut]
    after = drifted["activity"][drifted["activity"]["event_timestamp"] >= cut]
    assert after["sessions_7d"].mean() < 0.8 * before["sessions_7d"].mean()
    assert after["support_tickets_30d"].mean() > 1.3 * before["support_tickets_30d"].mean()
    # rows before the drift start are untouched
    early = base["activity"]["event_timestamp"] < pd.Timestamp("2025-02-09", tz="UTC")
    np.testing.assert_array_equal(
        base["activity"].loc[early, "event_timestamp"].to_numpy(),
        drifted["activity"].loc[early, "event_timestamp"].to_numpy(),
    )
