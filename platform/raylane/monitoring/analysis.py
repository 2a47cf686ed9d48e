"""What a closed window says: drift against the champion's reference, data quality, live metric.

Everything here is whylogs' own machinery on mergeable profiles: drift scores from
``calculate_drift_scores`` (KS or Hellinger for numeric columns, chi-square for categorical ones),
quality from whylogs constraints (null fraction, the range seen in training), whylogs' interactive
drift page from its ``NotebookProfileVisualizer``. raylane adds a self-contained HTML page per
window (no script, no network: it opens on an air-gapped cluster too). The live metric is the
gate's metric on the window's labelled predictions (the inference log joined to `/feedback`).
"""

from __future__ import annotations

import html
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raylane.config import ProjectConfig

__all__ = ["ColumnDrift", "LiveMetric", "WindowAnalysis", "analyse", "live_metric", "render_html", "write_whylogs_html"]

log = logging.getLogger(__name__)

PREDICTION = "prediction"


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


@dataclass
class WindowAnalysis:
    rows: int
    reference_version: str | None
    drift: list[ColumnDrift] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)
    live: LiveMetric | None = None

    @property
    def drifted_features(self) -> list[str]:
        return [d.column for d in self.drift if d.drifted and d.column != PREDICTION]

    @property
    def prediction_drifted(self) -> bool:
        return any(d.drifted for d in self.drift if d.column == PREDICTION)

    @property
    def failed_checks(self) -> list[str]:
        return [q["name"] for q in self.quality if not q["passed"]]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["drifted_features"] = self.drifted_features
        out["prediction_drifted"] = self.prediction_drifted
        out["failed_checks"] = self.failed_checks
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


def analyse(cfg: ProjectConfig, window: Any, reference: Any | None, reference_version: str | None) -> WindowAnalysis:
    """Drift of each feature and of the prediction, and the quality checks, of a window's profile."""
    features = list(cfg.feature_dtypes())
    out = WindowAnalysis(rows=rows_of(window), reference_version=reference_version)
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
    if len(rows) < cfg.monitor.min_labels:
        return live
    y = rows["label"].to_numpy(dtype=float)
    if task == "multiclass":  # the log's probabilities, in the classes' order
        if "probabilities" not in rows:
            return live
        pred = np.stack(rows["probabilities"].to_list())
        y = y.astype(int)
    else:
        pred = rows["prediction"].to_numpy(dtype=float)
    value = _finite(metrics(task, y, pred).get(metric))
    live.value = value
    if value is not None and threshold is not None:
        live.breached = value < threshold if mode == "max" else value > threshold
    return live


def window_predictions(cfg: ProjectConfig, start: datetime, end: datetime) -> pd.DataFrame:
    """The inference log's predictions made in [start, end] with their latest labels."""
    from raylane.serving.inference_log import read

    try:
        frame = read(cfg)
    except FileNotFoundError:
        return pd.DataFrame(columns=["prediction", "label"])
    if frame.empty:
        return frame
    ts = pd.to_datetime(frame["ts"], utc=True)
    return frame[(ts >= pd.Timestamp(start)) & (ts <= pd.Timestamp(end))]


def write_whylogs_html(window: Any, reference: Any | None, path: Path) -> Path | None:
    """whylogs' interactive drift summary (the window against the reference) as an HTML page.
    It loads jQuery and fonts from public CDNs, so it needs a browser with internet access."""
    if reference is None:
        return None
    from whylogs.viz import NotebookProfileVisualizer

    viz = NotebookProfileVisualizer()
    viz.set_profiles(target_profile_view=window, reference_profile_view=reference)
    data = viz.summary_drift_report().data
    # whylogs wraps its page in a notebook <iframe srcdoc="…">; the file is the page itself
    inner = re.search(r'srcdoc="([^"]*)"', data)
    path.write_text(html.unescape(inner.group(1)) if inner else data, encoding="utf-8")
    return path


_STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f3f3f3}.drift{background:#fde2e1}
.fail{color:#b00020}.ok{color:#1b7f3b}code{background:#f3f3f3;padding:1px 4px}"""


def render_html(report: dict[str, Any]) -> str:
    """A window's report as one self-contained HTML page (no script, no network)."""
    e = html.escape

    def num(x: Any) -> str:
        return "—" if x is None else f"{x:.4g}"

    drifted = report.get("drifted_features") or []
    rows = "".join(
        f"<tr class='{'drift' if d['drifted'] else ''}'><td>{e(d['column'])}</td><td>{e(d['algorithm'])}</td>"
        f"<td>{num(d['pvalue'])}</td><td>{num(d['statistic'])}</td><td>{'drifted' if d['drifted'] else 'no'}</td></tr>"
        for d in report.get("drift", [])
    )
    checks = "".join(
        f"<tr><td>{e(q['name'])}</td><td class='{'ok' if q['passed'] else 'fail'}'>"
        f"{'passed' if q['passed'] else 'FAILED'}</td></tr>"
        for q in report.get("quality", [])
    )
    live = report.get("live") or {}
    live_text = (
        f"{e(str(live.get('metric')))} {num(live.get('value'))} on {live.get('labelled', 0)} labelled predictions"
        if live
        else "no labels"
    )
    decision = report.get("decision") or {}
    reasons = "; ".join(decision.get("reasons", []))
    title = f"raylane monitor · {report['project']} · window {report['window']}"
    interactive = (
        "<p>whylogs' interactive drift page (it needs internet for its scripts):"
        " <a href='whylogs.html'>whylogs.html</a></p>"
        if report.get("whylogs_html")
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title><style>{_STYLE}</style></head>
<body><h1>{e(title)}</h1>
<p>{report["rows"]} rows from {report["profiles"]} profiles,
{e(str(report["opened_at"]))} → {e(str(report["closed_at"]))},
against the reference profile of champion <code>v{e(str(report.get("reference_version")))}</code>.</p>
<h2>Drift: {len(drifted)} features drifted</h2>
<p class="{"fail" if drifted else "ok"}">{e(", ".join(drifted)) or "none"}</p>
<table><tr><th>column</th><th>algorithm</th><th>p-value</th><th>statistic</th><th>drifted</th></tr>{rows}</table>
<h2>Data quality</h2><table><tr><th>check</th><th>result</th></tr>{checks}</table>
<h2>Live metric</h2><p>{live_text}</p>
<h2>Decision</h2><p><b>{e(str(decision.get("action", "none")))}</b> {e(reasons)}
{e(str(decision.get("why") or decision.get("job_id") or ""))}</p>
{interactive}
</body></html>
"""
