"""Labels from /feedback join the training set only under ingestion's rule (no Ray: files only)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from raylane.config import load_config
from raylane.inference_log import LogWriter, feedback_schema, log_dir, prediction_schema
from raylane.ingest import offline_path
from raylane.retrain import feedback_labels
from raylane.testing import example_config_path


def test_feedback_labels_that_break_the_rule_are_left_out(tmp_path: Path) -> None:
    env = {"CHURN_DATA": str(tmp_path / "data"), "RAYLANE_STORAGE": str(tmp_path / "store")}
    cfg = load_config(example_config_path(), env=env)
    folder = offline_path(cfg, "labels")
    folder.mkdir(parents=True)
    ts = pa.timestamp("us", tz="UTC")
    schema = pa.schema([("customer_id", pa.int64()), ("churned", pa.int64()), ("label_timestamp", ts)])
    now = datetime.now(UTC)
    pq.write_table(
        pa.Table.from_pylist([{"customer_id": 1, "churned": 0, "label_timestamp": now}], schema), folder / "a.parquet"
    )
    # a log written before /feedback checked labels: 999 and -7 must not reach training
    preds = LogWriter(log_dir(cfg), "predictions", prediction_schema(cfg), 10, "t")
    fb = LogWriter(log_dir(cfg), "feedback", feedback_schema(cfg), 10, "t")
    labels = {f"r{k}": label for k, label in enumerate([0, 1, 999, -7, 1])}
    preds.append(
        [
            {"request_id": r, "ts": now, "model_name": "m", "model_version": "1", "customer_id": i, "prediction": 0.5}
            for i, r in enumerate(labels)
        ]
    )
    fb.append([{"request_id": r, "ts": now, "customer_id": None, "label": v} for r, v in labels.items()])
    preds.flush()
    fb.flush()
    assert feedback_labels(cfg) == 3
    added = pq.read_table(next(folder.glob("feedback-labels-*.parquet"))).to_pylist()
    assert sorted(r["churned"] for r in added) == [0, 1, 1] and all(r["label_timestamp"] for r in added)
