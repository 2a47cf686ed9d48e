"""Retraining, as the monitor schedules it (``jobs/retrain.py``, a Ray job; or ``raylane retrain``).

One pass of continuous training: ingest the sources again (the newest data), add the labels that
came back through ``/feedback`` as label rows (the entity and the time of its prediction, so the
point-in-time join gives the features it was served with), apply and materialize the features,
then train → register → gate → promote exactly as ``raylane train``. Serving follows the champion
alias, so a promotion is live within ``serve.model_poll_s``. A challenger that fails the gate
leaves the champion where it was.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from raylane.config import ProjectConfig
from raylane.labels import invalid_labels, label_rule
from raylane.lineage import Tag

__all__ = ["RetrainResult", "feedback_labels", "retrain", "write_result"]

log = logging.getLogger(__name__)

FEEDBACK_FILE_PREFIX = "feedback-labels"


@dataclass
class RetrainResult:
    reason: str
    version: str | None
    promoted: bool
    gate: str | None
    metrics: dict[str, float]
    feedback_labels: int
    seconds: float


def feedback_labels(cfg: ProjectConfig) -> int:
    """Append the inference log's labelled predictions to the ingested label table; returns the rows.

    Labels are checked with ingestion's rule (`raylane.labels`); one that breaks it is left out.

    Written as one more parquet file in the labels' offline folder, with the folder's own schema
    (the timestamp is the prediction's, the label the feedback's)."""
    from raylane.inference_log import read
    from raylane.ingest import EVENT_TIME, offline_path

    labels = cfg.data.labels
    src = cfg.data.source(labels.source)
    folder = offline_path(cfg, labels.source)
    files = sorted(folder.glob("*.parquet"))
    if not files:
        return 0
    try:
        logged = read(cfg)
    except FileNotFoundError:
        return 0
    logged = logged[logged["label"].notna()] if len(logged) else logged
    bad = invalid_labels(cfg.model.task, logged["label"].tolist())
    if bad.any():  # the rule ingestion applies; /feedback refuses them, older logs may hold some
        log.warning(
            "raylane: %d feedback label(s) break the rule (%s) and are left out, e.g. %s",
            int(bad.sum()),
            label_rule(cfg.model.task),
            logged["label"][bad].head(3).tolist(),
        )
        logged = logged[~bad]
    if not len(logged):
        return 0
    schema = pq.read_schema(files[0])
    key = cfg.entity.join_key
    columns: dict[str, Any] = {
        key: logged[key].to_numpy(),
        src.timestamp_column: logged["ts"].to_numpy(),
        EVENT_TIME: logged["ts"].to_numpy(),
        labels.column: logged["label"].to_numpy(),
    }
    arrays = []
    for f in schema:
        if f.name in columns:
            arrays.append(pa.array(columns[f.name]).cast(f.type, safe=False))
        else:
            arrays.append(pa.nulls(len(logged), type=f.type))
    table = pa.Table.from_arrays(arrays, schema=schema)
    pq.write_table(table, folder / f"{FEEDBACK_FILE_PREFIX}-{uuid.uuid4().hex[:8]}.parquet")
    return table.num_rows


def retrain(cfg: ProjectConfig, reason: str, *, step: Callable[[str], object] = lambda _: None) -> RetrainResult:
    """Ingest → feedback labels → apply → materialize → train → register → gate → promote. Needs Ray."""
    from raylane.features import FeatureRepo
    from raylane.ingest import ingest
    from raylane.training import train

    started = time.perf_counter()
    step("ingesting the newest data")
    ingest(cfg)
    step("adding labels from /feedback")
    added = feedback_labels(cfg)
    repo = FeatureRepo(cfg)
    step("applying and materializing features")
    repo.apply()
    repo.materialize()
    result = train(cfg, step=step, extra_tags={Tag.TRIGGER: reason[:500]})
    return RetrainResult(
        reason=reason,
        version=result.version,
        promoted=result.promoted,
        gate=result.decision.reason if result.decision else None,
        metrics=result.metrics,
        feedback_labels=added,
        seconds=time.perf_counter() - started,
    )


def write_result(result: RetrainResult, path: Path) -> None:
    """Where the monitor finds what its retrain job produced (``monitor/retrains/<job id>.json``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(result), indent=1))
