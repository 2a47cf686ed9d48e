"""raylane's ASOF offline store answers as Feast's own DuckDB store does (real Feast, real DuckDB).

The data is made to hit every rule of Feast's point-in-time join: rows after the entity time,
rows exactly at it, rows older than a view's ttl, a view with no ttl, two rows with the same key
and event time told apart by their created time, an entity row before any feature row, duplicate
entity rows, a key with no feature rows, a field mapping, and full feature names.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raylane.feast_stores import ASOF_DUCKDB


def _store(root: Path, offline_type: str, data: Path) -> object:
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
    from feast.data_format import ParquetFormat
    from feast.types import Float64, Int64, String

    import raylane.feast_offline  # noqa: F401

    root.mkdir()
    config = RepoConfig(
        project="asof",
        provider="local",
        registry=str(root / "registry.db"),
        offline_store={"type": offline_type},
        online_store={"type": "sqlite", "path": str(root / "online.db")},
        entity_key_serialization_version=3,
        repo_path=str(root),
    )
    store = FeatureStore(config=config)
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    fast = FileSource(
        path=str(data / "fast" / "*.parquet"),
        file_format=ParquetFormat(),
        timestamp_field="ts",
        created_timestamp_column="created",
    )
    slow = FileSource(
        path=str(data / "slow" / "*.parquet"),
        file_format=ParquetFormat(),
        timestamp_field="ts",
        field_mapping={"raw_tier": "tier"},
    )
    views = [
        FeatureView(
            name="fast",
            entities=[user],
            ttl=timedelta(hours=6),
            schema=[Field(name="clicks", dtype=Int64), Field(name="spend", dtype=Float64)],
            source=fast,
        ),
        FeatureView(
            name="slow",
            entities=[user],
            ttl=timedelta(0),
            schema=[Field(name="tier", dtype=String), Field(name="score", dtype=Float64)],
            source=slow,
        ),
    ]
    store.apply([user, *views])
    return store


def _data(root: Path) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(7)
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    n_fast, n_slow, users = 600, 200, 40
    fast_ts = t0 + pd.to_timedelta(rng.integers(0, 72, n_fast), unit="h")
    fast = pd.DataFrame(
        {
            "user_id": rng.integers(0, users, n_fast),
            "ts": fast_ts,
            "created": fast_ts + pd.to_timedelta(rng.integers(0, 3600, n_fast), unit="s"),
            "clicks": rng.integers(0, 100, n_fast),
            "spend": rng.random(n_fast).round(3),
        }
    )
    # same key and event time, later created time and another value: the later one wins
    twin = fast.iloc[:50].copy()
    twin["created"] += pd.Timedelta(hours=2)
    twin["clicks"] += 1000
    fast = pd.concat([fast, twin], ignore_index=True)
    slow = pd.DataFrame(
        {
            "user_id": rng.integers(0, users, n_slow),
            # distinct times: without a created time, Feast breaks no ties, so neither store can
            "ts": t0 + pd.to_timedelta(rng.permutation(72 * 60)[:n_slow], unit="min"),
            "raw_tier": rng.choice(["a", "b", "c"], n_slow),
            "score": rng.random(n_slow).round(3),
        }
    )
    for name, frame in {"fast": fast, "slow": slow}.items():
        (root / name).mkdir(parents=True)
        half = len(frame) // 2
        frame.iloc[:half].to_parquet(root / name / "a.parquet")
        frame.iloc[half:].to_parquet(root / name / "b.parquet")
    entities = pd.DataFrame(
        {
            "user_id": np.r_[rng.integers(0, users + 5, 400), fast["user_id"].iloc[:40], [3, 3]],
            "event_timestamp": np.r_[
                t0 + pd.to_timedelta(rng.integers(-5, 90 * 60, 400), unit="min"),
                fast["ts"].iloc[:40],  # exactly at a feature row: it counts
                [t0 - pd.Timedelta(days=1)] * 2,  # before any row, and a duplicate
            ],
            "tag": np.arange(442),  # a column passed through
        }
    )
    entities["event_timestamp"] = pd.to_datetime(entities["event_timestamp"], utc=True)
    return root, entities


def _answer(store: object, entities: pd.DataFrame, full_feature_names: bool) -> pd.DataFrame:
    refs = ["fast:clicks", "fast:spend", "slow:tier", "slow:score"]
    job = store.get_historical_features(  # type: ignore[attr-defined]
        entity_df=entities.copy(), features=refs, full_feature_names=full_feature_names
    )
    frame = job.to_arrow().to_pandas()
    return frame.sort_values("tag").reset_index(drop=True)


@pytest.mark.parametrize("full_feature_names", [False, True])
def test_asof_store_equals_feasts_duckdb_store(tmp_path: Path, full_feature_names: bool) -> None:
    data, entities = _data(tmp_path / "data")
    ours = _answer(_store(tmp_path / "asof", ASOF_DUCKDB, data), entities, full_feature_names)
    feast = _answer(_store(tmp_path / "feast", "duckdb", data), entities, full_feature_names)
    assert len(ours) == len(entities)
    pd.testing.assert_frame_equal(ours[feast.columns.tolist()], feast, check_dtype=False)
    clicks = "fast__clicks" if full_feature_names else "clicks"
    # the data hit each branch: expired or missing (null), and the later created twin won
    assert 0 < ours[clicks].isna().sum() < len(ours)
    assert (ours[clicks] >= 1000).any()
    assert ours.loc[ours["tag"] >= 440, clicks].isna().all()
