"""What a closed window says: drift against the champion's reference, data quality, live metric.

Everything here is whylogs' own machinery on mergeable profiles: drift scores from
``calculate_drift_scores`` (KS or Hellinger for numeric columns, chi-square for categorical ones),
quality from whylogs constraints (null fraction, the range seen in training). The live metric is
the gate's metric on the window's labelled predictions (the inference log joined to `/feedback`).
The pages a window is shown in are `raylane.monitoring.report`'s; what to do about it is the policy's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from raylane.config import ProjectConfig

__all__ = [
    "AUTHENTICATED",
    "ColumnDrift",
    "LiveMetric",
    "WindowAnalysis",
    "analyse",
    "labelled_arrays",
    "live_metric",
    "rows_of",
    "window_predictions",
]

log = logging.getLogger(__name__)

PREDICTION = "prediction"
# 1 for a row of a request that carried the service's API key, 0 for an anonymous one; a profile
# column beside the features (a dotted name, so no feature's), never compared with the reference
AUTHENTICATED = "raylane.authenticated"


@dataclass
class ColumnDrift:
    column: str
    algorithm: str
    statistic: float | None
    pvalue: float | None
    drifted: bool


@dataclass
class LiveMetric:
    metric: str
    value: float | None
    labelled: int
    worse_than: float | None = None  # the trigger's threshold, when one is configured
    breached: bool = False
    version: str | None = None  # the model version whose predictions were measured (the latest seen)
    source: str | None = None  # a challenger's: ``shadow`` (the same requests) or ``canary`` (its own share)


@dataclass
class WindowAnalysis:
    rows: int
    reference_version: str | None
    authenticated_rows: int = 0  # rows of requests that carried the API key (a batch's: all)
    drift: list[ColumnDrift] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)
    live: LiveMetric | None = None
    challenger: LiveMetric | None = None  # a rollout's challenger: on the requests it shadowed, or answered

    @property
    def drifted_features(self) -> list[str]:
        return [d.column for d in self.drift if d.drifted and d.column != PREDICTION]

    @property
    def prediction_drifted(self) -> bool:
        return any(d.drifted for d in self.drift if d.column == PREDICTION)

    @property
    def authenticated_share(self) -> float:
        return self.authenticated_rows / self.rows if self.rows else 0.0

    @property
    def failed_checks(self) -> list[str]:
        return [q["name"] for q in self.quality if not q["passed"]]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["drifted_features"] = self.drifted_features
        out["prediction_drifted"] = self.prediction_drifted
        out["failed_checks"] = self.failed_checks
        out["authenticated_share"] = round(self.authenticated_share, 4)
        return out


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def rows_of(view: Any) -> int:
    """Rows in a profile of served traffic (every row has a prediction)."""
    column = view.get_column(PREDICTION)
    return int(column.get_metric("counts").n.value) if column is not None else 0


def authenticated_rows_of(view: Any) -> int:
    """Rows of a profile that came with the API key (the `AUTHENTICATED` column's sum; 0 without it)."""
    column = view.get_column(AUTHENTICATED)
    dist = column.get_metric("distribution") if column is not None else None
    if dist is None or not dist.n:
        return 0
    return round(float(dist.mean.value) * int(dist.n))


def analyse(cfg: ProjectConfig, window: Any, reference: Any | None, reference_version: str | None) -> WindowAnalysis:
    """Drift of each feature and of the prediction, and the quality checks, of a window's profile."""
    features = list(cfg.feature_dtypes())
    out = WindowAnalysis(rows_of(window), reference_version, authenticated_rows_of(window))
    if reference is not None:
        out.drift = _drift(cfg, window, reference, [*features, PREDICTION])
    out.quality = _quality(cfg, window, reference, features)
    return out


def _drift(cfg: ProjectConfig, window: Any, reference: Any, columns: list[str]) -> list[ColumnDrift]:
    from whylogs.viz.drift.column_drift_algorithms import Hellinger, calculate_drift_scores

    drift_cfg = cfg.monitor.drift
    present = set(window.get_columns()) & set(reference.get_columns())
    names = [c for c in columns if c in present]
    numeric = {c for c in names if window.get_column(c).get_metric("distribution") is not None}
    drift_map = {c: Hellinger() for c in numeric} if drift_cfg.numeric == "hellinger" else None
    scores = calculate_drift_scores(
        target_view=window, reference_view=reference, with_thresholds=False, drift_map=drift_map
    )
    out = []
    for name in names:
        score = scores.get(name)
        if not score:  # whylogs found nothing to compare (e.g. the column is all null)
            continue
        pvalue, statistic = _finite(score.get("pvalue")), _finite(score.get("statistic"))
        if pvalue is not None:
            drifted = pvalue < drift_cfg.threshold
        else:
            drifted = statistic is not None and statistic > drift_cfg.threshold
        out.append(ColumnDrift(name, str(score.get("algorithm")), statistic, pvalue, drifted))
    return out


def _quality(cfg: ProjectConfig, window: Any, reference: Any | None, features: list[str]) -> list[dict[str, Any]]:
    """whylogs constraints: each feature's null fraction, and numeric features within the training range."""
    from whylogs.core.constraints import ConstraintsBuilder
    from whylogs.core.constraints.factories import is_in_range, null_percentage_below_number

    limits = {name: spec.max_null_fraction for src in cfg.data.sources for name, spec in src.columns.items()}
    builder = ConstraintsBuilder(dataset_profile_view=window)
    present = set(window.get_columns())
    for name in features:
        if name not in present:
            continue
        limit = limits.get(name)
        builder.add_constraint(
            null_percentage_below_number(name, cfg.monitor.max_null_fraction if limit is None else limit)
        )
        ref = reference.get_column(name) if reference is not None else None
        dist = ref.get_metric("distribution") if ref is not None else None
        if dist is not None and dist.n > 0 and window.get_column(name).get_metric("distribution") is not None:
            builder.add_constraint(is_in_range(name, float(dist.min), float(dist.max)))
    return [
        {"name": r.name, "passed": bool(r.failed == 0), "summary": r.summary}
        for r in builder.build().generate_constraints_report(with_summary=True)
    ]


def live_metric(cfg: ProjectConfig, labelled: pd.DataFrame) -> LiveMetric:
    """The gate's metric on labelled predictions (``prediction`` and ``label`` columns)."""
    from raylane.model import metrics, primary_metric

    task = cfg.model.task
    metric, mode = primary_metric(task, cfg.registry.promotion.metric)
    threshold = cfg.monitor.triggers.live_metric_below
    rows = labelled.dropna(subset=["label"])
    live = LiveMetric(metric, None, len(rows), threshold)
    if len(labelled) and {"model_version", "ts"} <= set(labelled.columns):
        live.version = str(labelled.sort_values("ts")["model_version"].iloc[-1])
    if len(rows) < cfg.monitor.min_labels or (arrays := labelled_arrays(task, rows)) is None:
        return live
    value = _finite(metrics(task, *arrays).get(metric))
    live.value = value
    if value is not None and threshold is not None:
        live.breached = value < threshold if mode == "max" else value > threshold
    return live


def labelled_arrays(task: str, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(y, pred) of labelled log rows as the task's metrics take them; None for a multiclass log
    without probabilities."""
    y = rows["label"].to_numpy(dtype=float)
    if task != "multiclass":
        return y, rows["prediction"].to_numpy(dtype=float)
    if "probabilities" not in rows:
        return None
    return y.astype(int), np.stack(rows["probabilities"].to_list())  # in the classes' order


def window_predictions(cfg: ProjectConfig, start: datetime, end: datetime, kind: str = "predictions") -> pd.DataFrame:
    """The inference log's predictions (or the challenger's ``shadow`` ones) made in [start, end]
    with their latest labels."""
    from raylane.inference_log import read

    try:
        frame = read(cfg, kind)
    except FileNotFoundError:
        return pd.DataFrame(columns=["prediction", "label"])
    if frame.empty:
        return frame
    ts = pd.to_datetime(frame["ts"], utc=True)
    return frame[(ts >= pd.Timestamp(start)) & (ts <= pd.Timestamp(end))]
