"""The inference log: every prediction served, and every label sent back through /feedback.

Replicas buffer rows in memory and write them off the request path, one parquet file per flush
(after ``serve.inference_log.flush_rows`` rows or ``flush_seconds``), under
``<storage_root>/inference_log/{predictions,feedback,shadow,failures}/date=YYYY-MM-DD/`` (``shadow``:
the challenger's predictions on the requests the champion answered in a shadow rollout;
``failures``: the entities a model version could not score, which a canary's guard counts). Files are written under
a temporary name and renamed, so readers never see half a file. A row the schema cannot hold is
quarantined under ``rejected/{predictions,feedback}/`` as JSON with the reason (`read_rejected`).
A replica shutting down writes what it holds; a replica that crashes loses at most its last
unflushed interval.

`read` joins the two: every prediction with its feedback label (the latest one, if several), the
set later issues train and measure live performance on.

Written by serving (`LogWriter` in each replica), read by monitoring (a window's live metric) and
retraining (labels from /feedback): it sits below all three, so none of them imports another for it.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raylane.config import ProjectConfig

__all__ = ["LogWriter", "log_dir", "read", "read_feedback", "read_predictions", "read_rejected"]

# What `pa.Table.from_pylist` raises for a value its column's type cannot hold.
_UNWRITABLE = (pa.ArrowException, OverflowError, TypeError, ValueError)
_ARROW = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "bool": pa.bool_()}


def log_dir(cfg: ProjectConfig) -> Path:
    return cfg.storage_root / "inference_log"


def _arrow_type(dtype: str) -> pa.DataType:
    return _ARROW.get(dtype, pa.timestamp("us", tz="UTC"))


def prediction_schema(cfg: ProjectConfig) -> pa.Schema:
    key = cfg.entity.join_key
    key_dtype = cfg.data.source(cfg.features.views[0].source).columns[key].dtype
    fields = [
        pa.field("request_id", pa.string()),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field(key, _arrow_type(key_dtype)),
        *(pa.field(f, _arrow_type(t)) for f, t in cfg.feature_dtypes().items()),
        pa.field("prediction", pa.string() if cfg.model.task == "multiclass" else pa.float64()),
    ]
    if cfg.model.task == "multiclass":
        fields.append(pa.field("probabilities", pa.list_(pa.float64())))
    # How long the request took to be scored, in ms (null in ``shadow``: it answered nothing).
    fields.append(pa.field("latency_ms", pa.float64()))
    return pa.schema(fields)


def failure_schema(cfg: ProjectConfig) -> pa.Schema:
    """An entity a model version could not score (``reason``: ``model_error`` or ``out_of_range``)."""
    key = cfg.entity.join_key
    key_dtype = cfg.data.source(cfg.features.views[0].source).columns[key].dtype
    return pa.schema(
        [
            pa.field("ts", pa.timestamp("us", tz="UTC")),
            pa.field("model_name", pa.string()),
            pa.field("model_version", pa.string()),
            pa.field(key, _arrow_type(key_dtype)),
            pa.field("reason", pa.string()),
        ]
    )


def read_failures(cfg: ProjectConfig, *, since: datetime | None = None) -> pd.DataFrame:
    """Every logged scoring failure (`failure_schema`); with ``since``, at least those since then."""
    return _read(log_dir(cfg) / "failures", failure_schema(cfg), since)


def feedback_schema(cfg: ProjectConfig) -> pa.Schema:
    key = cfg.entity.join_key
    key_dtype = cfg.data.source(cfg.features.views[0].source).columns[key].dtype
    label = cfg.data.source(cfg.data.labels.source).columns[cfg.data.labels.column].dtype
    return pa.schema(
        [
            pa.field("request_id", pa.string()),
            pa.field("ts", pa.timestamp("us", tz="UTC")),
            pa.field(key, _arrow_type(key_dtype)),
            pa.field("label", pa.float64() if cfg.model.task == "regression" else _arrow_type(label)),
        ]
    )


class LogWriter:
    """Buffers rows of one kind and writes them as parquet files; thread-safe, never blocks on disk.

    `append` only takes a lock and extends a list; `flush` (called by the replica's background
    task, in a worker thread) writes what was buffered. A row that cannot be written as the schema
    says (a value out of its type's range) is quarantined, with the reason, as a JSON line under
    ``rejected/<kind>/``: it is never retried forever, and it never holds back the rows after it.
    When the disk itself fails, the rows stay buffered for the next flush and `error` says why.
    """

    def __init__(self, root: Path, kind: str, schema: pa.Schema, flush_rows: int, writer_id: str) -> None:
        self.folder = root / kind
        self.rejected_folder = root / "rejected" / kind
        self.schema = schema
        self.flush_rows = flush_rows
        self.writer_id = writer_id
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.written = 0
        self.rejected = 0
        self.files = 0
        self.error: str | None = None  # the last flush's failure, until a flush succeeds
        self.failing_since: float | None = None

    def append(self, rows: list[dict[str, Any]]) -> bool:
        """Buffer rows; True when the buffer is due to be flushed."""
        with self._lock:
            self._rows.extend(rows)
            return len(self._rows) >= self.flush_rows

    @property
    def pending(self) -> int:
        return len(self._rows)

    def flush(self) -> int:
        """Write the buffered rows as one file (quarantining those the schema cannot hold); returns
        how many were written or quarantined."""
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                table, bad = self._table(rows)
                if bad:
                    self._quarantine(bad)
                if table.num_rows:
                    self._write(table)
            except BaseException as exc:
                with self._lock:  # keep them for the next try
                    self._rows[:0] = rows
                self.error = f"{type(exc).__name__}: {exc}"[:500]
                self.failing_since = self.failing_since or time.time()
                raise
            self.error, self.failing_since = None, None
            self.written += table.num_rows
            self.rejected += len(bad)
            self.files += 1 if table.num_rows else 0
            return len(rows)

    def _table(self, rows: list[dict[str, Any]]) -> tuple[pa.Table, list[tuple[dict[str, Any], str]]]:
        try:
            return pa.Table.from_pylist(rows, schema=self.schema), []
        except _UNWRITABLE:
            pass
        good, bad = [], []
        for row in rows:  # find the rows at fault
            try:
                pa.Table.from_pylist([row], schema=self.schema)
                good.append(row)
            except _UNWRITABLE as exc:
                bad.append((row, f"{type(exc).__name__}: {exc}"))
        return pa.Table.from_pylist(good, schema=self.schema), bad

    def _name(self, suffix: str) -> str:
        return f"part-{int(time.time() * 1000)}-{self.writer_id}-{uuid.uuid4().hex[:8]}.{suffix}"

    def _write(self, table: pa.Table) -> None:
        folder = self.folder / f"date={datetime.now(UTC).strftime('%Y-%m-%d')}"
        folder.mkdir(parents=True, exist_ok=True)
        name = self._name("parquet")
        tmp = folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, folder / name)

    def _quarantine(self, bad: list[tuple[dict[str, Any], str]]) -> None:
        folder = self.rejected_folder / f"date={datetime.now(UTC).strftime('%Y-%m-%d')}"
        folder.mkdir(parents=True, exist_ok=True)
        name = self._name("jsonl")
        tmp = folder / f".{name}.tmp"
        lines = (json.dumps({"reason": why, "row": row}, default=str) for row, why in bad)
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, folder / name)


def read_rejected(cfg: ProjectConfig, kind: str = "predictions") -> list[dict[str, Any]]:
    """The quarantined rows of one kind: ``{"reason": ..., "row": {...}}`` each, oldest first."""
    out = []
    for f in sorted((log_dir(cfg) / "rejected" / kind).glob("date=*/part-*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines() if line]
    return out


def _read(folder: Path, schema: pa.Schema, since: datetime | None = None) -> pd.DataFrame:
    """The folder's rows; with ``since``, only from the files written since then (a file's name
    starts with the time it was written, after the rows it holds were made: no row made since is
    left out, older ones may come too)."""
    files = sorted(folder.glob("date=*/part-*.parquet"))
    if since is not None:
        after = int(since.timestamp() * 1000) - 1000
        files = [f for f in files if int(f.name.split("-")[1]) >= after]
    if not files:
        return schema.empty_table().to_pandas()
    tables = [pq.read_table(f, schema=schema) for f in files]
    return pa.concat_tables(tables).to_pandas()


def read_predictions(cfg: ProjectConfig) -> pd.DataFrame:
    return _read(log_dir(cfg) / "predictions", prediction_schema(cfg))


def read_feedback(cfg: ProjectConfig) -> pd.DataFrame:
    return _read(log_dir(cfg) / "feedback", feedback_schema(cfg))


def read(cfg: ProjectConfig, kind: str = "predictions", *, since: datetime | None = None) -> pd.DataFrame:
    """Every logged prediction (``kind``: served ``predictions``, or the challenger's ``shadow``
    ones) with its latest feedback ``label`` (null when none came back); with ``since``, at least
    those made since then (a canary's judge reads only its rollout's files).

    A label names its entity when its request scored several; a label without one applies to
    every entity of its request."""
    key = cfg.entity.join_key
    preds = _read(log_dir(cfg) / kind, prediction_schema(cfg), since)
    fb = (
        _read(log_dir(cfg) / "feedback", feedback_schema(cfg), since)
        .sort_values("ts")
        .rename(columns={"ts": "label_ts"})
    )
    keyed = fb[fb[key].notna()].drop_duplicates(["request_id", key], keep="last")
    keyed = keyed.astype({key: preds[key].dtype})  # nulls made it a float column
    whole = fb[fb[key].isna()].drop_duplicates("request_id", keep="last").drop(columns=[key])
    out = preds.merge(keyed, on=["request_id", key], how="left")
    out = out.merge(whole, on="request_id", how="left", suffixes=("", "_request"))
    out["label"] = out["label"].where(out["label"].notna(), out.pop("label_request"))
    out["label_ts"] = out["label_ts"].where(out["label_ts"].notna(), out.pop("label_ts_request"))
    return out
