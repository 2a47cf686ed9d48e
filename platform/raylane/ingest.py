"""Ingestion on Ray Data: read the raw sources, validate them, write the offline tables.

For each source in ``data.sources``: read its parquet or csv files with Ray Data, check the
columns the config declares (presence, type, the timestamp column, null-rate limits, at least
one row), cast them to one canonical Arrow schema, and write them as parquet under
``<storage_root>/offline/<source>/``, the folder Feast's sources read.

Nothing is half-written: a source is written to a temporary folder and swapped into place only
after all of it was read and checked, and a failed source leaves the previous table as it was.
Nothing here knows a domain: a new data set needs only a new config.
"""

from __future__ import annotations

import glob
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from raylane.config import ColumnType, ProjectConfig, SourceConfig
from raylane.errors import DataError

__all__ = ["IngestReport", "arrow_type", "ingest", "ingest_source", "offline_path", "source_files"]

_ARROW: dict[ColumnType, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def arrow_type(dtype: ColumnType) -> pa.DataType:
    """The canonical Arrow type of a logical column type."""
    return _ARROW[dtype]


@dataclass(frozen=True)
class IngestReport:
    """What ingesting one source did."""

    source: str
    files: int
    rows: int
    columns: int
    min_time: datetime
    max_time: datetime
    null_fraction: dict[str, float]
    path: Path


def offline_path(cfg: ProjectConfig, source: str) -> Path:
    """Folder of the offline table written for ``source``."""
    return cfg.storage_root / "offline" / source


def source_files(src: SourceConfig) -> list[str]:
    """The files of a source: the file itself, the files in its folder, or its glob's matches."""
    path = src.path
    suffixes = (".csv", ".csv.gz") if src.file_format == "csv" else (".parquet", ".pq")
    if any(ch in str(path) for ch in "*?["):
        files = sorted(glob.glob(str(path)))
    elif path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))
    elif path.is_file():
        files = [str(path)]
    else:
        raise DataError(
            f"source {src.name!r}: {path} does not exist",
            fix="create the data (for the example: `raylane demo data`) or fix data.sources.path",
        )
    if not files:
        raise DataError(
            f"source {src.name!r}: no {src.file_format} files in {path}",
            fix=f"put {src.file_format} files there or fix data.sources.path / format",
        )
    return files


def _root_cause(exc: BaseException) -> BaseException:
    seen = exc
    while True:
        nxt = getattr(seen, "cause", None) or seen.__cause__
        if nxt is None or nxt is seen:
            return seen
        seen = nxt


def _compatible(actual: pa.DataType, want: ColumnType) -> bool:
    if pa.types.is_null(actual):
        return True  # an all-null column: its null fraction decides
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    if want == "int64":
        return pa.types.is_integer(actual)
    if want == "float64":
        return pa.types.is_integer(actual) or pa.types.is_floating(actual) or pa.types.is_decimal(actual)
    if want == "string":
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if want == "bool":
        return pa.types.is_boolean(actual)
    return pa.types.is_timestamp(actual) or pa.types.is_date(actual) or pa.types.is_string(actual)


def _normalizer(src: SourceConfig) -> Callable[[pa.Table], pa.Table]:
    """A batch function: select the declared columns and cast them to the canonical schema."""
    wanted: dict[str, ColumnType] = {c: spec.dtype for c, spec in src.columns.items()}
    wanted[src.timestamp_column] = "timestamp"
    name = src.name

    def normalize(batch: pa.Table) -> pa.Table:
        out = {}
        for col, dtype in wanted.items():
            arr = batch.column(col)
            target = _ARROW[dtype]
            if pa.types.is_dictionary(arr.type):
                arr = arr.cast(arr.type.value_type)
            if dtype == "timestamp":
                arr = _to_timestamp(arr, name, col)
            elif not arr.type.equals(target):
                try:
                    arr = arr.cast(target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise DataError(
                        f"source {name!r}: column {col!r} has values that are not {dtype}: {exc}",
                        fix=f"clean the column or declare it with another dtype in data.sources ({name})",
                    ) from None
            out[col] = arr
        return pa.table(out)

    return normalize


def _to_timestamp(arr: Any, source: str, col: str) -> Any:
    target = _ARROW["timestamp"]
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        try:
            parsed = pc.cast(arr, pa.timestamp("us", tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            try:  # ISO-8601 with an offset, e.g. 2025-01-01T10:00:00+0000
                parsed = pc.strptime(arr, format="%Y-%m-%dT%H:%M:%S%z", unit="us")
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(
                    f"source {source!r}: timestamp column {col!r} has values that are not timestamps: {exc}",
                    fix="write ISO-8601 times such as 2025-01-31T12:00:00+00:00, or fix timestamp_column",
                ) from None
        return parsed.cast(target)
    if pa.types.is_date(arr.type):
        arr = arr.cast(pa.timestamp("us"))
    if pa.types.is_timestamp(arr.type) and arr.type.tz is None:
        return arr.cast(pa.timestamp("us")).cast(target)  # naive times are taken as UTC
    return arr.cast(target)


def _stats(batch: pa.Table) -> pa.Table:
    row: dict[str, list[Any]] = {"__rows__": [batch.num_rows]}
    for name in batch.column_names:
        row[f"null:{name}"] = [batch.column(name).null_count]
    ts = batch.column("__ts__")
    row["__min__"] = [pc.min(ts).as_py()]
    row["__max__"] = [pc.max(ts).as_py()]
    return pa.table(row)


def _prepare(cfg: ProjectConfig, src: SourceConfig) -> tuple[Any, IngestReport]:
    """Read and validate one source; the normalized, materialized dataset and its report.

    Raises:
        DataError: the source is missing, unreadable, empty, or does not match its declaration.
    """
    import ray

    files = source_files(src)
    where = files[0] if len(files) == 1 else f"{src.path} ({len(files)} files)"
    try:
        if src.file_format == "csv":
            ds = ray.data.read_csv(files)
        else:
            ds = ray.data.read_parquet(files)
        schema = ds.schema()
    except Exception as exc:  # Ray wraps reader errors; report the reader's own words
        raise _read_error(src, where, exc) from None
    if schema is None:
        raise DataError(f"source {src.name!r}: {where} is empty", fix="the source must have at least one row")
    actual = dict(zip(schema.names, schema.types, strict=True))
    declared: dict[str, ColumnType] = {c: s.dtype for c, s in src.columns.items()}
    declared[src.timestamp_column] = "timestamp"
    missing = [c for c in declared if c not in actual]
    if missing:
        raise DataError(
            f"source {src.name!r}: {where} has no column(s) {missing}; it has {list(actual)}",
            fix=f"add the column(s) to the data, or fix data.sources ({src.name}).columns / timestamp_column",
        )
    for col, dtype in declared.items():
        if not _compatible(actual[col], dtype):
            what = "timestamp column" if col == src.timestamp_column else "column"
            raise DataError(
                f"source {src.name!r}: {what} {col!r} in {where} is {actual[col]}, not {dtype}",
                fix=f"convert the column to {dtype}, or declare its real type in data.sources ({src.name})",
            )

    ts_col = src.timestamp_column
    try:
        normalized = ds.map_batches(_normalizer(src), batch_format="pyarrow").materialize()
        stats = normalized.map_batches(
            lambda b: _stats(b.append_column("__ts__", b.column(ts_col))), batch_format="pyarrow"
        ).to_arrow_refs()
        parts = [t for t in ray.get(stats) if t.num_rows]
    except DataError:
        raise
    except Exception as exc:
        cause = _root_cause(exc)
        if isinstance(cause, DataError):
            raise cause from None
        raise _read_error(src, where, exc) from None
    totals = pa.concat_tables(parts) if parts else None
    rows = int(pc.sum(totals.column("__rows__")).as_py() or 0) if totals is not None else 0
    if rows == 0:
        raise DataError(f"source {src.name!r}: {where} has no rows", fix="the source must have at least one row")
    assert totals is not None
    nulls = {c: int(pc.sum(totals.column(f"null:{c}")).as_py() or 0) / rows for c in declared}
    if nulls[ts_col] > 0:
        raise DataError(
            f"source {src.name!r}: timestamp column {ts_col!r} has {nulls[ts_col]:.1%} empty values",
            fix="every row needs its event time",
        )
    key = cfg.entity.join_key
    if nulls.get(key, 0) > 0:
        raise DataError(
            f"source {src.name!r}: entity key {key!r} has {nulls[key]:.1%} empty values",
            fix="every row needs its entity key",
        )
    for col, spec in src.columns.items():
        if nulls[col] > spec.max_null_fraction:
            raise DataError(
                f"source {src.name!r}: column {col!r} is {nulls[col]:.1%} null, above its limit"
                f" of {spec.max_null_fraction:.1%}",
                fix=f"fix the data, or raise data.sources ({src.name}).columns.{col}.max_null_fraction",
            )

    return normalized, IngestReport(
        source=src.name,
        files=len(files),
        rows=rows,
        columns=len(declared),
        min_time=pc.min(totals.column("__min__")).as_py(),
        max_time=pc.max(totals.column("__max__")).as_py(),
        null_fraction=nulls,
        path=offline_path(cfg, src.name),
    )


def _write(normalized: Any, final: Path) -> None:
    """Write to a temporary folder, then swap it into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    try:
        normalized.write_parquet(str(tmp))
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ingest_source(cfg: ProjectConfig, src: SourceConfig) -> IngestReport:
    """Read, validate and write one source. See the module docstring.

    Raises:
        DataError: the source is missing, unreadable, empty, or does not match its declaration.
    """
    normalized, report = _prepare(cfg, src)
    _write(normalized, report.path)
    return report


def _read_error(src: SourceConfig, where: str, exc: BaseException) -> DataError:
    cause = _root_cause(exc)
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    if "CSV parse error" in text or "CSV conversion error" in text:
        fix = "fix or remove the broken row (every row needs the header's number of fields)"
    else:
        fix = f"check that the file is valid {src.file_format} (data.sources ({src.name}).format)"
    return DataError(f"source {src.name!r}: cannot read {where}: {text}", fix=fix)


def ingest(
    cfg: ProjectConfig,
    *,
    sources: list[str] | None = None,
    on_done: Callable[[IngestReport], None] | None = None,
) -> list[IngestReport]:
    """Ingest every source (or the named ones), in config order. Needs Ray (see `raylane.runtime`).

    Args:
        cfg: The project.
        sources: Names of the sources to ingest; all when omitted.
        on_done: Called with each source's report once it was read and checked.

    Every source is checked before any is written, so one bad source leaves all tables as they were.
    """
    chosen = [s for s in cfg.data.sources if sources is None or s.name in sources]
    if sources is not None and (unknown := set(sources) - {s.name for s in chosen}):
        raise DataError(
            f"unknown source(s) {sorted(unknown)}", fix=f"choose from {[s.name for s in cfg.data.sources]}"
        )
    for src in chosen:  # cheap checks first, so a missing file fails before any reading
        source_files(src)
    prepared = []
    for src in chosen:
        normalized, report = _prepare(cfg, src)
        prepared.append((normalized, report))
        if on_done is not None:
            on_done(report)
    for normalized, report in prepared:
        _write(normalized, report.path)
    return [report for _, report in prepared]
