"""Helpers of raylane's point-in-time join (`raylane.features.FeatureRepo.training_set`).

Feast is asked once per distinct (entity key, time) pair, and every input row takes its pair's
answer by position (`number_pairs`). A view's ttl is applied here from the feature row's own
time (`within_ttl`): Feast's Ray offline store ignores ttls, and its file store drops the rows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from raylane.ingest import EVENT_TIME

__all__ = ["number_pairs", "within_ttl"]


def within_ttl(joined: pa.Table, ttl: timedelta, *, entity_time: str) -> Any:
    """Which of Feast's answer rows hold a feature row no older than ``ttl`` at the entity time
    (column ``entity_time``); the feature row's time is the `EVENT_TIME` column."""
    instant = pa.timestamp("us", tz="UTC")
    event = joined.column(EVENT_TIME).cast(instant)
    if not ttl:  # Feast's ttl 0: rows never expire
        return np.asarray(event.is_valid().to_numpy(zero_copy_only=False))
    since = pc.subtract(joined.column(entity_time).cast(instant), pa.scalar(ttl, pa.duration("us")))
    return np.asarray(pc.fill_null(pc.greater_equal(event, since), False).to_numpy(zero_copy_only=False))


def number_pairs(keys: pd.Series, times: pd.Series) -> tuple[Any, Any]:
    """Number the distinct (key, time) pairs: each row's pair number, and each pair's first row."""
    key_codes, _ = pd.factorize(keys, use_na_sentinel=False)
    # a datetime column is hashed as its int64 instants (NaT is one of them): much faster
    instants = times.array.asi8 if isinstance(times.dtype, pd.DatetimeTZDtype) else times
    time_codes, time_values = pd.factorize(instants, use_na_sentinel=False)
    combined = key_codes.astype(np.int64) * max(len(time_values), 1) + time_codes
    codes, _ = pd.factorize(combined)  # numbered in order of first appearance
    # so a row is its pair's first exactly where the running maximum of the numbers grows
    top = np.maximum.accumulate(codes)
    first = np.ones(len(codes), dtype=bool)
    first[1:] = top[1:] > top[:-1]
    return codes, np.flatnonzero(first)
