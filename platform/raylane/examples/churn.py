"""A deterministic generator for the example project: subscription churn.

This is example data, not platform code: no stage of raylane imports it. It writes three raw
sources that `configs/churn.yaml` declares:

- ``profiles.parquet``: a slow feature source (one row per customer about every 30 days) with
  categorical columns (plan, region, payment method), tenure and monthly charges (some missing).
- ``activity.parquet``: a fast feature source (a row per customer per day, some days skipped)
  with usage counts, minutes watched, days since the last login (some missing), support tickets
  and failed payments.
- ``labels.csv``: label rows (customer, label time, churned within 30 days), as csv on purpose.

Churn depends on a hidden engagement level that the activity features measure with noise, on
the plan, tenure, charges and failed payments, so a good model reaches a ROC-AUC well above 0.75.

The drift knob: from ``drift_start`` on, engagement falls, charges rise, the invoice payment
method spreads, and the label relationship changes (support tickets and charges weigh more,
engagement less), so a model trained before the drift decays after it.

The same seed and sizes always give the same bytes of data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["SIZES", "ChurnDataSpec", "generate", "write"]

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)

PLANS = np.array(["basic", "standard", "premium"])
REGIONS = np.array(["north", "south", "east", "west"])
PAYMENTS = np.array(["card", "paypal", "invoice"])


@dataclass(frozen=True)
class ChurnDataSpec:
    """Sizes and knobs of a generated data set."""

    customers: int = 300
    days: int = 60
    labels: int = 2_000
    activity_every_days: int = 1
    seed: int = 7
    drift_start_day: int | None = None
    drift_strength: float = 1.0


SIZES: dict[str, ChurnDataSpec] = {
    "tiny": ChurnDataSpec(customers=300, days=60, labels=2_000),
    "small": ChurnDataSpec(customers=2_000, days=120, labels=20_000),
    "medium": ChurnDataSpec(customers=20_000, days=120, labels=200_000, activity_every_days=3),
    "large": ChurnDataSpec(customers=400_000, days=90, labels=1_000_000, activity_every_days=10),
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ts(days: np.ndarray) -> pd.DatetimeIndex:
    # Whole seconds keep parquet and csv round trips exact.
    return pd.to_datetime(EPOCH) + pd.to_timedelta(np.round(days * 86400.0), unit="s")


def generate(spec: ChurnDataSpec) -> dict[str, pd.DataFrame]:
    """Generate the three raw tables: ``profiles``, ``activity`` and ``labels``."""
    rng = np.random.default_rng(spec.seed)
    n, days = spec.customers, spec.days
    ids = np.arange(1, n + 1, dtype=np.int64) * 10 + 1000  # not 0..n, so ids are not row numbers
    drift = spec.drift_start_day
    k = spec.drift_strength

    def drifted(t: np.ndarray) -> np.ndarray:
        return (t >= drift).astype(float) * k if drift is not None else np.zeros_like(t, dtype=float)

    base_eng = rng.normal(0.0, 1.0, n)
    slope = rng.normal(0.0, 0.6, n)  # engagement drifts per customer over the period
    plan = rng.choice(3, n, p=[0.45, 0.35, 0.20])
    region = rng.choice(4, n)
    payment0 = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    tenure0 = rng.integers(0, 48, n)
    charge_base = np.array([9.99, 15.99, 22.99])[plan] * rng.uniform(0.9, 1.1, n)

    def engagement(c: np.ndarray, t: np.ndarray) -> np.ndarray:
        return base_eng[c] + slope[c] * (t / days) - 0.8 * drifted(t)

    # --- profiles: about monthly per customer, starting at a random offset.
    offset = rng.uniform(0, 30, n)
    snaps = int(np.ceil(days / 30)) + 1
    pc = np.repeat(np.arange(n), snaps)
    pt = np.maximum(offset[pc] + 30.0 * np.tile(np.arange(snaps), n) - 30.0, 0.0)
    keep = (pt < days) & ~((pt == 0.0) & (np.tile(np.arange(snaps), n) > 0))
    pc, pt = pc[keep], pt[keep]
    payment = np.where(rng.random(pc.size) < 0.5 * drifted(pt), 2, payment0[pc])
    charges = charge_base[pc] * (1 + 0.25 * drifted(pt)) + rng.normal(0, 0.5, pc.size)
    charges = np.where(rng.random(pc.size) < 0.08, np.nan, np.round(charges, 2))
    profiles = pd.DataFrame(
        {
            "customer_id": ids[pc],
            "plan": PLANS[plan[pc]].astype(object),
            "region": REGIONS[region[pc]].astype(object),
            "payment_method": PAYMENTS[payment].astype(object),
            "tenure_months": (tenure0[pc] + (pt // 30)).astype(np.int64),
            "monthly_charges": charges,
            "event_timestamp": _ts(pt),
        }
    )

    # --- activity: every `activity_every_days`, ~10% of snapshots missing, random time of day.
    step = spec.activity_every_days
    slots = np.arange(0, days, step, dtype=float)
    ac = np.repeat(np.arange(n), slots.size)
    at = np.tile(slots, n) + rng.uniform(0, min(step, 1.0) * 0.9, ac.size)
    keep = rng.random(ac.size) > 0.10
    ac, at = ac[keep], at[keep]
    eng = engagement(ac, at)
    sessions = rng.poisson(np.exp(2.4 + 0.5 * eng))
    minutes = np.round(sessions * rng.gamma(4.0, 6.0 * np.exp(0.2 * eng)), 1)
    last_login = np.round(rng.exponential(2.0 * np.exp(-0.7 * eng)), 2)
    last_login = np.where(rng.random(ac.size) < 0.05, np.nan, last_login)
    tickets = rng.poisson(np.exp(-1.0 - 0.5 * eng + 0.4 * (plan[ac] == 0) + 0.6 * drifted(at)))
    failed = rng.poisson(0.15 + 0.5 * (payment0[ac] == 2) + 0.3 * drifted(at))
    activity = pd.DataFrame(
        {
            "customer_id": ids[ac],
            "sessions_7d": sessions.astype(np.int64),
            "minutes_watched_7d": minutes,
            "days_since_last_login": last_login,
            "support_tickets_30d": tickets.astype(np.int64),
            "failed_payments_90d": failed.astype(np.int64),
            "event_timestamp": _ts(at),
        }
    )

    # --- labels: random customers at random times after the first week.
    lc = rng.integers(0, n, spec.labels)
    lt = rng.uniform(min(7.0, days / 2), days, spec.labels)
    eng_l = engagement(lc, lt)
    d = drifted(lt)
    exp_tickets = np.exp(-1.0 - 0.5 * eng_l + 0.4 * (plan[lc] == 0) + 0.6 * d)
    logit = (
        -1.2
        - (2.2 - 1.4 * d) * eng_l
        + 0.7 * (plan[lc] == 0)
        - 0.03 * tenure0[lc]
        + 0.5 * (payment0[lc] == 2)
        + (0.15 + 0.5 * d) * exp_tickets
        + 0.06 * d * (charge_base[lc] - 15.0)
    )
    churned = (rng.random(spec.labels) < _sigmoid(logit)).astype(np.int64)
    labels = pd.DataFrame(
        {
            "customer_id": ids[lc],
            "label_timestamp": _ts(lt),
            "churned": churned,
        }
    )
    return {"profiles": profiles, "activity": activity, "labels": labels}


def write(
    spec: ChurnDataSpec,
    out_dir: Path,
    *,
    label_format: Literal["csv", "parquet"] = "csv",
) -> dict[str, Path]:
    """Generate and write the raw sources into ``out_dir``; returns the file of each table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = generate(spec)
    paths = {
        "profiles": out_dir / "profiles.parquet",
        "activity": out_dir / "activity.parquet",
        "labels": out_dir / f"labels.{label_format}",
    }
    tables["profiles"].to_parquet(paths["profiles"], index=False)
    tables["activity"].to_parquet(paths["activity"], index=False)
    if label_format == "csv":
        tables["labels"].to_csv(paths["labels"], index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
    else:
        tables["labels"].to_parquet(paths["labels"], index=False)
    return paths


def day(d: float) -> datetime:
    """The timestamp of day ``d`` of the generated period."""
    return EPOCH + timedelta(days=d)
