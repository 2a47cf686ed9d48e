"""Feast store plugins raylane selects by config.

`MonotonicSqliteOnlineStore` is Feast's SQLite online store with one change: a write never
replaces a stored row with an older one. Feast's own SQLite store upserts unconditionally, so
materializing an older window after a newer one would move online values back in time; Feast's
Redis store already compares event times, and this makes the embedded default behave the same.

Feast loads it from ``online_store.type: raylane.feast_stores.MonotonicSqliteOnlineStore``
(its plugin mechanism: the config class is the store's name plus ``Config``). The offline
plugin, Feast's DuckDB store with an ``ASOF JOIN``, is `raylane.feast_offline`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal


def _unchecked(target: Any = None, **_: Any) -> Any:
    return target if target is not None else _unchecked


def import_without_typeguard(*modules: str) -> None:
    """Import Feast (and ``modules``) with typeguard's ``@typechecked`` as a no-op while its modules load.

    Feast decorates its core classes with ``@typechecked``, which re-parses and recompiles each
    module's source at import: about 2 s of every fresh process that imports Feast (the CLI, each
    scoring actor, each Serve replica), half of ``import feast``. raylane builds Feast's objects
    from a validated config, so those run-time checks of Feast's arguments add nothing. Only the
    modules loaded here are affected: typeguard is restored at once, for every other library."""
    import typeguard

    checked = typeguard.typechecked
    typeguard.typechecked = _unchecked
    try:
        import importlib

        for module in ("feast", "feast.infra.online_stores.sqlite", *modules):
            importlib.import_module(module)
    finally:
        typeguard.typechecked = checked


import_without_typeguard()

from feast.infra.key_encoding_utils import serialize_entity_key  # noqa: E402
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig, _table_id  # noqa: E402
from feast.repo_config import RepoConfig  # noqa: E402
from feast.utils import to_naive_utc  # noqa: E402

__all__ = ["MonotonicSqliteOnlineStore", "MonotonicSqliteOnlineStoreConfig"]

TYPE = "raylane.feast_stores.MonotonicSqliteOnlineStore"
# The embedded offline store (`raylane.feast_offline`: it imports ibis and DuckDB, which an online
# reader never needs, so it lives in a module of its own).
ASOF_DUCKDB = "raylane.feast_offline.AsofDuckDBOfflineStore"

# SQLite's default limit of host parameters per statement is 32766; stay well below it.
_CHUNK = 900


class MonotonicSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """Config of `MonotonicSqliteOnlineStore`; the same fields as Feast's SQLite store."""

    type: Literal["raylane.feast_stores.MonotonicSqliteOnlineStore"] = TYPE  # type: ignore[assignment]


class MonotonicSqliteOnlineStore(SqliteOnlineStore):
    """Feast's SQLite online store that keeps, per entity, the row with the newest event time."""

    def online_write_batch(
        self,
        config: RepoConfig,
        table: Any,
        data: list[tuple[Any, dict[str, Any], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        conn = self._get_conn(config)
        name = _table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        version = config.entity_key_serialization_version
        keys = [serialize_entity_key(row[0], entity_key_serialization_version=version) for row in data]
        stored: dict[bytes, datetime] = {}
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
        if exists:
            unique = list(dict.fromkeys(keys))
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                # No MAX(): an aggregate loses the column's declared type, and with it the
                # timestamp converter Feast registers; the rows come back as datetimes this way.
                for key, ts in conn.execute(
                    f'SELECT entity_key, event_ts FROM "{name}" WHERE entity_key IN ({marks})', chunk
                ):
                    if key not in stored or ts > stored[key]:
                        stored[key] = ts
        newer = [
            row for key, row in zip(keys, data, strict=True) if key not in stored or to_naive_utc(row[2]) >= stored[key]
        ]
        skipped = len(data) - len(newer)
        super().online_write_batch(config, table, newer, progress)
        if progress is not None and skipped:
            progress(skipped)
