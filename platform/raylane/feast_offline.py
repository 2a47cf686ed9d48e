"""Feast's DuckDB offline store with a point-in-time join by DuckDB's ``ASOF JOIN``.

Feast 0.67's DuckDB store (``feast.infra.offline_stores.ibis.point_in_time_join``) joins each
entity row to *every* feature row of its key at or before the entity time, then keeps the newest
with a window function over a string id built from the key and time of each row: its cost grows
with the feature history of each key. DuckDB's ``ASOF LEFT JOIN`` finds that newest row directly,
by a sorted merge, and keeps every entity row (nulls where no feature row is valid). This store
is Feast's DuckDB store with that one method replaced; sources, materialization, writes and
monitoring are Feast's. Its answer has the same rows and values as Feast's, in no set order (as
Feast's own).

Semantics, per feature view: the feature row with the greatest event time ``<=`` the entity
time and ``>=`` the entity time minus the view's ttl (a ttl of 0 never expires); rows with the
same key and event time are ranked by the source's ``created_timestamp_column`` when it has one.
Feast's ``filter_by_created_timestamp`` (created time ``<=`` the entity time too) and an entity
frame given as SQL are handed to Feast's own join unchanged.

Feast loads it from ``offline_store.type: raylane.feast_offline.AsofDuckDBOfflineStore``
(its plugin mechanism: the config class is the store's name plus ``Config``).
"""

from __future__ import annotations

from typing import Any, Literal

from raylane.feast_stores import ASOF_DUCKDB, import_without_typeguard

# Feast's DuckDB store imports its MLflow data source at each read: once here, without typeguard.
import_without_typeguard("feast.infra.offline_stores.duckdb", "feast.infra.data_sources.mlflow.mlflow_dataset_source")

import ibis  # noqa: E402
import pandas as pd  # noqa: E402
from feast.infra.offline_stores import offline_utils  # noqa: E402
from feast.infra.offline_stores.duckdb import (  # noqa: E402
    DuckDBOfflineStore,
    DuckDBOfflineStoreConfig,
    _read_data_source,
    _validate_lance_feature_views,
    _write_data_source,
)
from feast.infra.offline_stores.ibis import IbisRetrievalJob, _get_entity_df_event_timestamp_range, _to_utc  # noqa: E402
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata  # noqa: E402
from feast.on_demand_feature_view import OnDemandFeatureView  # noqa: E402
from feast.repo_config import RepoConfig  # noqa: E402
from ibis.expr import datatypes as dt  # noqa: E402

__all__ = ["AsofDuckDBOfflineStore", "AsofDuckDBOfflineStoreConfig"]


class AsofDuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """Config of `AsofDuckDBOfflineStore`; the same fields as Feast's DuckDB store."""

    type: Literal["raylane.feast_offline.AsofDuckDBOfflineStore"] = ASOF_DUCKDB  # type: ignore[assignment]


class AsofDuckDBOfflineStore(DuckDBOfflineStore):
    """Feast's DuckDB offline store whose point-in-time join is one ``ASOF LEFT JOIN`` per view."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[Any],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: Any,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        if not isinstance(entity_df, pd.DataFrame) or filter_by_created_timestamp:
            return DuckDBOfflineStore.get_historical_features(
                config,
                feature_views,
                feature_refs,
                entity_df,  # type: ignore[arg-type]
                registry,
                project,
                full_feature_names=full_feature_names,
                filter_by_created_timestamp=filter_by_created_timestamp,
            )
        _validate_lance_feature_views(feature_views)
        entity_schema = dict(zip(entity_df.columns, entity_df.dtypes, strict=True))
        entity_ts = offline_utils.infer_event_timestamp_from_entity_df(entity_schema=entity_schema)
        timestamp_range = _get_entity_df_event_timestamp_range(entity_df, entity_ts)
        frame: pd.DataFrame = _to_utc(entity_df, entity_ts)
        result = ibis.memtable(frame)
        for i, view in enumerate(feature_views):
            features, table = _view_table(config, view, feature_refs, full_feature_names, i)
            ts, keys = f"__raylane_ts_{i}", _join_keys(view)
            predicates = [result[entity] == table[f"__raylane_key_{i}_{n}"] for n, entity in enumerate(keys.values())]
            joined = result.asof_join(table, on=result[entity_ts] >= table[ts], predicates=predicates)
            if view.ttl:  # Feast's ttl: valid while event time + ttl >= the entity time
                fresh = joined[ts] >= joined[entity_ts].cast(dt.Timestamp(timezone="UTC")) - ibis.interval(
                    microseconds=int(view.ttl.total_seconds() * 1_000_000)
                )
                result = joined.select(
                    *result.columns,
                    **{f: fresh.ifelse(joined[f], ibis.null().cast(joined[f].type())) for f in features},
                )
            else:
                result = joined.select(*result.columns, *features)
        odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        for odfv in odfvs:
            if odfv.mode == "substrait":
                result = odfv.transform_ibis(result, full_feature_names)
        return IbisRetrievalJob(
            result,
            [odfv for odfv in odfvs if odfv.mode != "substrait"],
            full_feature_names,
            metadata=RetrievalMetadata(
                features=feature_refs,
                keys=list(set(frame.columns) - {entity_ts}),
                min_event_timestamp=timestamp_range[0],
                max_event_timestamp=timestamp_range[1],
            ),
            data_source_writer=_write_data_source,
            staging_location=config.offline_store.staging_location,
            staging_location_endpoint_override=config.offline_store.staging_location_endpoint_override,
            repo_path=str(config.repo_path),
        )


def _join_keys(view: Any) -> dict[str, str]:
    """Feature-table column -> entity-frame column, as Feast's own join maps them."""
    return dict(view.projection.join_key_map or {e.name: e.name for e in view.entity_columns})


def _view_table(
    config: RepoConfig, view: Any, feature_refs: list[str], full_feature_names: bool, i: int
) -> tuple[list[str], Any]:
    """A view's feature table, reduced to its join keys, event time and requested features under
    names that cannot clash with the entity frame's; the features' output names first."""
    if view.batch_source is None:
        raise ValueError(f"Feature view '{view.name}' has no batch_source and cannot be queried.")
    table = _read_data_source(view.batch_source, str(config.repo_path))
    for old, new in view.batch_source.field_mapping.items():
        if old in table.columns:
            table = table.rename({new: old})
    prefix = view.projection.name_to_use()
    names = [ref.split(":", 1)[1] for ref in feature_refs if ref.startswith(f"{prefix}:")]
    base = view.projection.name_alias or view.name
    out = [f"{base}__{n}" if full_feature_names else n for n in names]
    utc = dt.Timestamp(timezone="UTC")
    ts = view.batch_source.timestamp_field
    created = view.batch_source.created_timestamp_column
    if created:  # one row per key and event time: the newest created, as Feast ranks them
        window = ibis.window(
            group_by=[*(table[k] for k in _join_keys(view)), table[ts]], order_by=ibis.desc(table[created])
        )
        table = table.mutate(__raylane_rank=ibis.row_number().over(window))
        table = table.filter(table["__raylane_rank"] == 0)
    columns: dict[str, Any] = {f"__raylane_key_{i}_{n}": table[k] for n, k in enumerate(_join_keys(view))}
    columns[f"__raylane_ts_{i}"] = table[ts].cast(utc)
    columns.update({o: table[n] for o, n in zip(out, names, strict=True)})
    return out, table.select(**columns)
