"""The inference log: every prediction served, and every label sent back through /feedback.

Replicas buffer rows in memory and write them off the request path, one parquet file per flush
(after ``serve.inference_log.flush_rows`` rows or ``flush_seconds``), under
``<storage_root>/inference_log/{predictions,feedback}/date=YYYY-MM-DD/``. Files are written under
a temporary name and renamed, so readers never see half a file. A replica shutting down writes what
it holds; a replica that crashes loses at most its last unflushed interval.

`read` joins the two: every prediction with its feedback label (the latest one, if several), the
set later issues train and measure live performance on.

Written by serving (`LogWriter` in each replica), read by monitoring (a window's live metric) and
retraining (labels from /feedback): it sits below all three, so none of them imports another for it.
"""

from __future__ import annotations

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

__all__ = ["LogWriter", "log_dir", "read", "read_feedback", "read_predictions"]

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
    return pa.schema(fields)


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
    task, in a worker thread) writes what was buffered.
    """

    def __init__(self, folder: Path, schema: pa.Schema, *, flush_rows: int, writer_id: str) -> None:
        self.folder = folder
        self.schema = schema
        self.flush_rows = flush_rows
        self.writer_id = writer_id
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.written = 0
        self.files = 0

    def append(self, rows: list[dict[str, Any]]) -> bool:
        """Buffer rows; True when the buffer is due to be flushed."""
        with self._lock:
            self._rows.extend(rows)
            return len(self._rows) >= self.flush_rows

    @property
    def pending(self) -> int:
        return len(self._rows)

    def flush(self) -> int:
        """Write the buffered rows as one file; returns how many."""
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                table = pa.Table.from_pylist(rows, schema=self.schema)
                day = datetime.now(UTC).strftime("%Y-%m-%d")
                folder = self.folder / f"date={day}"
                folder.mkdir(parents=True, exist_ok=True)
                name = f"part-{int(time.time() * 1000)}-{self.writer_id}-{uuid.uuid4().hex[:8]}.parquet"
                tmp = folder / f".{name}.tmp"
                pq.write_table(table, tmp)
                os.replace(tmp, folder / name)
            except BaseException:
                with self._lock:  # keep them for the next try
                    self._rows[:0] = rows
                raise
            self.written += len(rows)
            self.files += 1
            return len(rows)


def _read(folder: Path, schema: pa.Schema) -> pd.DataFrame:
    files = sorted(folder.glob("date=*/part-*.parquet"))
    if not files:
        return schema.empty_table().to_pandas()
    tables = [pq.read_table(f, schema=schema) for f in files]
    return pa.concat_tables(tables).to_pandas()


def read_predictions(cfg: ProjectConfig) -> pd.DataFrame:
    return _read(log_dir(cfg) / "predictions", prediction_schema(cfg))


def read_feedback(cfg: ProjectConfig) -> pd.DataFrame:
    return _read(log_dir(cfg) / "feedback", feedback_schema(cfg))


def read(cfg: ProjectConfig) -> pd.DataFrame:
    """Every logged prediction with its latest feedback ``label`` (null when none came back).

    A label names its entity when its request scored several; a label without one applies to
    every entity of its request."""
    key = cfg.entity.join_key
    preds = read_predictions(cfg)
    fb = read_feedback(cfg).sort_values("ts").rename(columns={"ts": "label_ts"})
    keyed = fb[fb[key].notna()].drop_duplicates(["request_id", key], keep="last")
    keyed = keyed.astype({key: preds[key].dtype})  # nulls made it a float column
    whole = fb[fb[key].isna()].drop_duplicates("request_id", keep="last").drop(columns=[key])
    out = preds.merge(keyed, on=["request_id", key], how="left")
    out = out.merge(whole, on="request_id", how="left", suffixes=("", "_request"))
    out["label"] = out["label"].where(out["label"].notna(), out.pop("label_request"))
    out["label_ts"] = out["label_ts"].where(out["label_ts"].notna(), out.pop("label_ts_request"))
    return out
