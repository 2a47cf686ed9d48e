"""Feast through raylane: point-in-time joins, online lookups, materialization order."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from raylane.config import ProjectConfig
from raylane.feast_stores import ASOF_DUCKDB
from raylane.features import FeatureRepo
from raylane.ingest import ingest, offline_path
from raylane.testing import as_of_by_definition, example_project, offline_table


@pytest.fixture(scope="module", params=["duckdb", "file", "ray"])
def store(
    request: pytest.FixtureRequest, churn: ProjectConfig, tmp_path_factory: pytest.TempPathFactory
) -> ProjectConfig:
    """The tiny churn project on each offline store raylane offers (the same data: same seed and size)."""
    if request.param == churn.backends.feast.offline_store.type:
        return churn
    cfg = example_project(
        tmp_path_factory.mktemp(f"churn-{request.param}"),
        overrides=[f"backends.feast.offline_store.type={request.param}"],
    )
    ingest(cfg)
    FeatureRepo(cfg).apply()
    return cfg


def test_the_embedded_default_is_duckdb(churn: ProjectConfig) -> None:
    assert FeatureRepo(churn).feature_store_yaml()["offline_store"] == {"type": ASOF_DUCKDB}


def _same(a: pd.Series, b: pd.Series) -> bool:
    a = a.astype(object).where(a.notna(), None)
    b = b.astype(object).where(b.notna(), None)
    return all((x is None and y is None) or x == y for x, y in zip(a, b, strict=True))


def test_training_set_equals_brute_force_as_of_join(store: ProjectConfig) -> None:
    churn = store
    repo = FeatureRepo(churn)
    labels = repo.labels()
    assert len(labels) >= 1000
    got = repo.training_set(labels).to_pandas()
    assert len(got) == len(labels)
    assert list(got.columns[:3]) == ["customer_id", "label_timestamp", "churned"]
    expected = as_of_by_definition(churn, labels, "label_timestamp")
    for name in churn.feature_dtypes():
        assert _same(got[name], expected[name]), name
    # the data exercises both branches: some features are null because of the ttl, most are not
    assert 0 < got["sessions_7d"].isna().sum() < len(got) // 4


def test_a_row_after_the_label_time_never_leaks_and_old_rows_expire(store: ProjectConfig) -> None:
    churn = store
    repo = FeatureRepo(churn)
    activity = offline_table(churn, "activity").sort_values("event_timestamp")
    key = churn.entity.join_key
    # an entity with two consecutive activity rows more than 2 h and less than the ttl apart
    found = None
    for entity, g in activity.groupby(key):
        gaps = g["event_timestamp"].diff()
        i = int(np.argmax((gaps > timedelta(hours=2)).to_numpy() & (gaps < timedelta(days=2)).to_numpy()))
        if i > 0:
            found = entity, g.iloc[i - 1], g.iloc[i], g["event_timestamp"].max()
            break
    assert found is not None
    entity, before, after, last = found
    ttl = churn.features.views[1].ttl
    probe = pd.DataFrame(
        {
            key: [entity] * 3,
            "label_timestamp": [
                after["event_timestamp"] - timedelta(seconds=1),  # 1 s before the newer row
                after["event_timestamp"],  # exactly at it: it counts
                last + ttl + timedelta(seconds=1),  # the newest row is now older than the ttl
            ],
        }
    )
    got = repo.training_set(probe).to_pandas()
    assert got["sessions_7d"].iloc[0] == before["sessions_7d"]
    assert got["minutes_watched_7d"].iloc[0] == before["minutes_watched_7d"]
    assert got["sessions_7d"].iloc[1] == after["sessions_7d"]
    assert pd.isna(got["sessions_7d"].iloc[2])
    # the slow view is still valid then (90 d ttl): one view expiring does not drop the row
    assert isinstance(got["plan"].iloc[2], str)


def test_online_store_holds_the_latest_row_per_entity(churn: ProjectConfig) -> None:
    reader = FeatureRepo(churn).online()
    key = churn.entity.join_key
    for source, view in (("profiles", "customer_profile"), ("activity", "customer_activity")):
        table = offline_table(churn, source).sort_values("event_timestamp")
        latest = table.groupby(key).tail(1).set_index(key)
        keys = latest.index[:25].tolist()
        got = reader.get(keys)
        for name in churn.view_features(next(v for v in churn.features.views if v.name == view)):
            expected = latest.loc[keys, name]
            assert _same(pd.Series(got[name]), expected.reset_index(drop=True)), name


def test_unknown_entity_gives_nulls(churn: ProjectConfig) -> None:
    got = FeatureRepo(churn).online().get([-1, 999_999_999])
    assert got["customer_id"] == [-1, 999_999_999]
    assert all(v is None for name in churn.feature_dtypes() for v in got[name])


def test_materializing_an_older_window_never_moves_values_back(fresh_churn: ProjectConfig) -> None:
    cfg = fresh_churn
    ingest(cfg)
    repo = FeatureRepo(cfg)
    repo.apply()
    activity = offline_table(cfg, "activity")
    mid = activity["event_timestamp"].quantile(0.5)
    end = activity["event_timestamp"].max() + timedelta(seconds=1)
    newer = repo.materialize(mid.to_pydatetime(), end.to_pydatetime(), views=["customer_activity"])
    assert newer[0].rows > 0
    reader = repo.online()
    key = cfg.entity.join_key
    keys = sorted(activity[key].unique().tolist())[:40]
    before = reader.get(keys)
    older = repo.materialize(
        activity["event_timestamp"].min().to_pydatetime(), mid.to_pydatetime(), views=["customer_activity"]
    )
    assert older[0].rows > 0
    after = reader.get(keys)
    assert after["sessions_7d"] == before["sessions_7d"]
    assert after["minutes_watched_7d"] == before["minutes_watched_7d"]
    # and the values are the newest rows of the offline table
    latest = activity.sort_values("event_timestamp").groupby(key).tail(1).set_index(key)
    assert after["sessions_7d"] == latest.loc[keys, "sessions_7d"].tolist()


def test_incremental_materialize_skips_empty_windows(fresh_churn: ProjectConfig) -> None:
    ingest(fresh_churn)
    repo = FeatureRepo(fresh_churn)
    repo.apply()
    first = repo.materialize(incremental=True)  # now - ttl: nothing that recent in 2025 data
    assert all(r.skipped and r.rows == 0 for r in first)


def test_training_set_before_apply_is_a_clear_error(fresh_churn: ProjectConfig) -> None:
    from raylane.errors import FeatureStoreError

    with pytest.raises(FeatureStoreError, match="raylane features apply"):
        FeatureRepo(fresh_churn).training_set()


def test_an_offline_table_from_an_older_raylane_asks_for_a_re_ingest(fresh_churn: ProjectConfig) -> None:
    """A table written before ingest kept each row's event time (the ttl's clock) is refused with the fix."""
    import pyarrow.parquet as pq

    from raylane.errors import FeatureStoreError
    from raylane.ingest import EVENT_TIME

    ingest(fresh_churn)
    repo = FeatureRepo(fresh_churn)
    repo.apply()
    for file in offline_path(fresh_churn, "activity").glob("*.parquet"):
        pq.write_table(pq.read_table(file).drop_columns([EVENT_TIME]), file)
    for build in (repo.training_set, repo.materialize):
        with pytest.raises(FeatureStoreError, match="re-ingest it with `raylane features ingest CONFIG`"):
            build()
