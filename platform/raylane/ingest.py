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
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raylane.config import ColumnType, ProjectConfig, SourceConfig
from raylane.errors import DataError
from raylane.labels import invalid_labels, label_rule

__all__ = ["EVENT_TIME", "IngestReport", "ingest", "ingest_source", "offline_path", "source_files"]

# A copy of each row's event time, written beside it: Feast hands a feature row's own time back
# only as a feature, and raylane applies a view's ttl with it (Feast's Ray offline store ignores ttls).
EVENT_TIME = "_raylane_event_time"

_ARROW: dict[ColumnType, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


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


def _parquet_rows(src: SourceConfig, files: list[str]) -> int:
    """Rows in the files' footers (no data read)."""
    total = 0
    for f in files:
        try:
            total += pq.ParquetFile(f).metadata.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(
                f"source {src.name!r}: {f} is not a readable parquet file: {exc}",
                fix=f"replace the file, or set data.sources ({src.name}).format if it is csv",
            ) from None
    return total


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
    """A batch function: select the declared columns and cast them to the canonical schema.

    It never raises: a timestamp string that does not parse becomes null, and the driver turns
    nulls in the timestamp column into an error with examples (an exception raised inside a Ray
    Data task reaches the driver without its type, so errors are decided there).
    """
    wanted: dict[str, ColumnType] = {c: spec.dtype for c, spec in src.columns.items()}
    wanted[src.timestamp_column] = "timestamp"

    def normalize(batch: pa.Table) -> pa.Table:
        out = {}
        for col, dtype in wanted.items():
            arr = batch.column(col)
            if pa.types.is_dictionary(arr.type):
                arr = arr.cast(arr.type.value_type)
            out[col] = _to_timestamp(arr) if dtype == "timestamp" else arr.cast(_ARROW[dtype])
        out[EVENT_TIME] = out[src.timestamp_column]
        return pa.table(out)

    return normalize


def _to_timestamp(arr: Any) -> Any:
    """Cast to UTC microseconds; naive times are taken as UTC; unparseable strings become null."""
    target = _ARROW["timestamp"]
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        try:
            return pc.cast(arr, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # ISO 8601 with a +hhmm offset, which the cast does not read; others become null.
            return pc.strptime(arr, format="%Y-%m-%dT%H:%M:%S%z", unit="us", error_is_null=True).cast(target)
    if pa.types.is_date(arr.type):
        arr = arr.cast(pa.timestamp("us"))
    if pa.types.is_timestamp(arr.type) and arr.type.tz is None:
        return arr.cast(pa.timestamp("us")).cast(target)
    return arr.cast(target)


def _bad_timestamps(ds: Any, col: str, limit: int = 3) -> list[Any]:
    """Up to ``limit`` raw values of ``col`` that are empty or do not parse as timestamps."""

    def bad(batch: pa.Table) -> pa.Table:
        raw = batch.column(col)
        parsed = _to_timestamp(raw)
        return pa.table({col: raw.filter(pc.is_null(parsed))}).cast(pa.schema([(col, pa.string())]))

    return [row[col] for row in ds.select_columns([col]).map_batches(bad, batch_format="pyarrow").take(limit)]


def _stats(batch: pa.Table, ts_col: str, label: str | None = None, task: str = "") -> pa.Table:
    """One row: the block's row count, null count per column, time range, and (for the label
    source) how many labels break the task's rule, with a few of them."""
    row: dict[str, list[Any]] = {"__rows__": [batch.num_rows]}
    if label is not None:
        values = batch.column(label).to_pylist()
        bad = invalid_labels(task, values)
        row["__bad_labels__"] = [int(bad.sum())]
        row["__bad_label_examples__"] = [json.dumps([values[i] for i in bad.nonzero()[0][:3]], default=str)]
    for name in batch.column_names:
        row[f"null:{name}"] = [batch.column(name).null_count]
    ts = batch.column(ts_col)
    row["__min__"] = [pc.min(ts).as_py()]
    row["__max__"] = [pc.max(ts).as_py()]
    return pa.table(row)


@dataclass(frozen=True)
class _Opened:
    src: SourceConfig
    files: list[str]
    where: str
    ds: Any  # ray.data.Dataset, not executed past its schema


def _open(src: SourceConfig) -> _Opened:
    """Open a source with Ray Data and check its schema (columns and types): cheap, no full read.

    Raises:
        DataError: the source is missing, unreadable, or lacks a declared column or type.
    """
    import ray

    files = source_files(src)
    where = files[0] if len(files) == 1 else f"{src.path} ({len(files)} files)"
    if src.file_format == "parquet" and _parquet_rows(src, files) == 0:
        raise DataError(f"source {src.name!r}: {where} has no rows", fix="the source must have at least one row")
    # Ray Data's default of ~200 read blocks costs seconds of scheduling on small sources;
    # aim at blocks of about 64 MB, and enough of them to keep every CPU busy on big ones.
    size = sum(os.path.getsize(f) for f in files)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    blocks = max(1, min(4 * cpus, -(-size // (64 << 20))))
    try:
        if src.file_format == "csv":
            ds = ray.data.read_csv(files, override_num_blocks=blocks)
        else:
            ds = ray.data.read_parquet(files, override_num_blocks=blocks)
        schema = ds.schema()
    except Exception as exc:  # Ray wraps reader errors; report the reader's own words
        raise _read_error(src, files, exc) from None
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
    return _Opened(src, files, where, ds)


def _prepare(cfg: ProjectConfig, opened: _Opened) -> tuple[Any, IngestReport]:
    """Normalize and check one opened source; the materialized dataset and its report.

    Raises:
        DataError: the source is empty, has unparseable times, null keys or too many nulls.
    """
    import ray

    src, files, where, ds = opened.src, opened.files, opened.where, opened.ds
    declared: dict[str, ColumnType] = {c: s.dtype for c, s in src.columns.items()}
    declared[src.timestamp_column] = "timestamp"

    ts_col = src.timestamp_column
    try:
        normalized = ds.map_batches(_normalizer(src), batch_format="pyarrow").materialize()
        # One small task per materialized block: cheaper than another Ray Data execution.
        stats_task = ray.remote(num_cpus=0.25)(_stats)
        label = cfg.data.labels.column if src.name == cfg.data.labels.source else None
        refs = [stats_task.remote(b, ts_col, label, cfg.model.task) for b in normalized.to_arrow_refs()]
        parts = [t for t in ray.get(refs) if t.num_rows]
    except Exception as exc:
        raise _read_error(src, files, exc) from None
    totals = pa.concat_tables(parts) if parts else None
    rows = int(pc.sum(totals.column("__rows__")).as_py() or 0) if totals is not None else 0
    if rows == 0:
        raise DataError(f"source {src.name!r}: {where} has no rows", fix="the source must have at least one row")
    assert totals is not None
    nulls = {c: int(pc.sum(totals.column(f"null:{c}")).as_py() or 0) / rows for c in declared}
    if nulls[ts_col] > 0:
        examples = _bad_timestamps(ds, ts_col)
        raise DataError(
            f"source {src.name!r}: timestamp column {ts_col!r} in {where} has"
            f" {round(nulls[ts_col] * rows):,} value(s) that are empty or not timestamps, e.g. {examples}",
            fix="write every event time as ISO 8601, e.g. 2025-01-31T12:00:00+00:00",
        )
    key = cfg.entity.join_key
    if nulls.get(key, 0) > 0:
        raise DataError(
            f"source {src.name!r}: entity key {key!r} has {nulls[key]:.1%} empty values",
            fix="every row needs its entity key",
        )
    if label is not None and (bad := int(pc.sum(totals.column("__bad_labels__")).as_py() or 0)):
        examples = [e for part in totals.column("__bad_label_examples__").to_pylist() for e in json.loads(part)][:3]
        raise DataError(
            f"source {src.name!r}: label column {label!r} in {where} has {bad:,} value(s) that a"
            f" {cfg.model.task} task cannot learn from, e.g. {examples}",
            fix=f"{label_rule(cfg.model.task)}: fix the data, or set model.task to the task the labels are for",
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
    normalized, report = _prepare(cfg, _open(src))
    _write(normalized, report.path)
    return report


def _read_error(src: SourceConfig, files: list[str], exc: BaseException) -> DataError:
    if src.file_format == "csv" and (found := _diagnose_csv(files)) is not None:
        file, problem = found
        return DataError(
            f"source {src.name!r}: cannot read {file}: {problem}",
            fix="fix or remove the broken row (every row needs the header's number of fields)",
        )
    cause = _root_cause(exc)
    lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
    text = lines[0] if lines else type(cause).__name__
    where = files[0] if len(files) == 1 else str(src.path)
    return DataError(
        f"source {src.name!r}: cannot read {where}: {text}",
        fix=f"check that the file is valid {src.file_format} (data.sources ({src.name}).format)",
    )


def _diagnose_csv(files: list[str]) -> tuple[str, str] | None:
    """The first file and Arrow's own message for a csv that does not parse.

    Ray Data replaces Arrow's parse error (which quotes the broken row) with a generic one, so on
    that error path the files are parsed again here, one batch at a time, to find it.
    """
    import pyarrow.csv as pacsv

    for file in files:
        try:
            with pacsv.open_csv(file) as reader:
                for _ in reader:
                    pass
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            return file, str(exc).strip().splitlines()[0]
    return None


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
        raise DataError(f"unknown source(s) {sorted(unknown)}", fix=f"choose from {[s.name for s in cfg.data.sources]}")
    for src in chosen:  # cheap checks first: a missing file fails before anything is read
        source_files(src)
    opened = [_open(src) for src in chosen]  # then every schema, before any full read
    prepared = []
    for o in opened:
        normalized, report = _prepare(cfg, o)
        prepared.append((normalized, report))
        if on_done is not None:
            on_done(report)
    for normalized, report in prepared:
        _write(normalized, report.path)
    return [report for _, report in prepared]
