"""The monitor's Ray metrics: a closed window's numbers and the retrain jobs' outcomes.

Ray's metrics agent on each node exports them as Prometheus text (``raylane_*``, tagged with the
project); they are made inside the monitor actor, so they need Ray there and nowhere else.
"""

from __future__ import annotations

from raylane.monitoring.analysis import WindowAnalysis

__all__ = ["MonitorMetrics"]


class MonitorMetrics:
    """Ray metrics (scraped as Prometheus from each node's metrics agent)."""

    def __init__(self, project: str) -> None:
        from ray.util.metrics import Counter, Gauge

        tags = ("project",)
        self.project = project
        self.drift = Gauge("raylane_drift_score", "Drift p-value or distance per column.", tag_keys=(*tags, "column"))
        self.drifted = Gauge("raylane_drifted_features", "Features that drifted in the last window.", tag_keys=tags)
        self.rows = Gauge("raylane_window_rows", "Rows in the last closed window.", tag_keys=tags)
        self.live = Gauge("raylane_live_metric", "The gate's metric on labelled live predictions.", tag_keys=tags)
        self.windows = Counter("raylane_windows_total", "Windows closed.", tag_keys=tags)
        self.retrains = Counter("raylane_retrains_total", "Retrain jobs, by outcome.", tag_keys=(*tags, "outcome"))
        self.versions = Gauge(
            "raylane_live_metric_by_version",
            "The gate's metric on each version's labelled live predictions in the last window (a rollout's two).",
            tag_keys=(*tags, "version", "role"),
        )
        self.rollouts = Counter(
            "raylane_rollout_decisions_total", "The canary's decisions, by verdict.", tag_keys=(*tags, "verdict")
        )

    def window(self, analysis: WindowAnalysis) -> None:
        tags = {"project": self.project}
        self.rows.set(analysis.rows, tags)
        self.windows.inc(1, tags)
        self.drifted.set(len(analysis.drifted_features), tags)
        for d in analysis.drift:
            value = d.pvalue if d.pvalue is not None else d.statistic
            if value is not None:
                self.drift.set(value, {**tags, "column": d.column})
        if analysis.live is not None and analysis.live.value is not None:
            self.live.set(analysis.live.value, tags)
        for role, live in (("champion", analysis.live), ("challenger", analysis.challenger)):
            if live is not None and live.value is not None and live.version:
                self.versions.set(live.value, {**tags, "version": live.version, "role": role})

    def rollout(self, verdict: str) -> None:
        """A canary decision taken: ``advance``, ``promote`` or ``abort``."""
        self.rollouts.inc(1, {"project": self.project, "verdict": verdict})

    def retrain(self, outcome: str) -> None:
        """``submitted``, ``submit_failed``, or how a job ended (a `raylane.jobs.ENDED` status, lower case)."""
        self.retrains.inc(1, {"project": self.project, "outcome": outcome})
