"""The demo loop on the example project, step by step (``raylane demo run``, ``make demo``).

It runs every stage that exists on freshly generated churn data and returns one summary row per
step: data → ingestion → Feast (apply, materialize, training set, online lookup) → training on
Ray Train with MLflow tracking → registry and promotion gate → a small Ray Tune sweep whose best
trial goes through the same gate → the champion served on Ray Serve under sample traffic, every
prediction in the inference log and profiled for the monitor → new data arrives with the
generator's drift knob on → drifted traffic → the monitor finds the drift and submits the retrain
job → the new champion is served. Needs Ray (the caller starts it, see `raylane.runtime`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raylane.config import ProjectConfig
from raylane.errors import UserError
from raylane.jobs import SUCCEEDED

if TYPE_CHECKING:
    from raylane.examples.churn import ChurnDataSpec
    from raylane.features import FeatureRepo
    from raylane.monitoring.store import DecisionRecord

__all__ = ["run_demo"]

Row = tuple[str, str, float]
Stage = tuple[str, Callable[[], str]]

# How long the closed loop waits for the retrain job and then for the replicas to serve its model.
RETRAIN_TIMEOUT_S = 900
# Windows of drifted traffic sent before giving up on the monitor acting.
MAX_DRIFTED_WINDOWS = 8


def run_demo(cfg: ProjectConfig, *, size: str = "small", step: Callable[[str], object] = print) -> list[Row]:
    """Generate data, ingest, apply, materialize, build the training set, look up online features,
    train, register and gate a model, sweep and gate the best trial's model, serve it under traffic
    with the monitor on, then let drifted data arrive and follow the loop to the retrained champion."""
    from raylane.examples.churn import SIZES
    from raylane.features import FeatureRepo

    if size not in SIZES:
        raise UserError(f"size {size!r} is not a demo size", fix=f"use one of {', '.join(SIZES)}")
    rows: list[Row] = []

    def timed(name: str, fn: Callable[[], str]) -> None:
        step(name)
        started = time.perf_counter()
        result = fn()
        rows.append((name, result, time.perf_counter() - started))

    demo = _Demo(cfg, replace(SIZES[size]), FeatureRepo(cfg))
    for name, fn in demo.build_stages():
        timed(name, fn)
    demo.headers = demo.api_headers()
    try:
        for name, fn in demo.serve_stages():
            timed(name, fn)
    finally:
        demo.undeploy()
    return rows


@dataclass
class _Demo:
    """One demo episode: the stages, and what a stage leaves for the later ones."""

    cfg: ProjectConfig
    spec: ChurnDataSpec
    repo: FeatureRepo
    frame: Any = None  # the training set (pandas), from `training_set`
    keys: list[Any] = field(default_factory=list)  # entity keys the traffic cycles through
    headers: dict[str, str] | None = None  # the API key header, when the service needs one
    record: Any = None  # the deployment, once `serve_traffic` deployed it

    @property
    def data_dir(self) -> Path:
        return self.cfg.data.source(self.cfg.data.labels.source).path.parent

    @property
    def key(self) -> str:
        return self.cfg.entity.join_key

    # ----- building a model: data → features → train → sweep

    def build_stages(self) -> list[Stage]:
        return [
            ("generate data", self.generate),
            ("ingest (Ray Data)", self.ingest),
            ("apply (Feast)", self.apply),
            ("materialize", self.materialize),
            ("training set (point-in-time)", self.training_set),
            ("online lookup", self.online),
            ("train → register → gate (Ray Train, MLflow)", self.train_and_gate),
            ("sweep → register → gate (Ray Tune, ASHA)", self.small_sweep),
        ]

    def generate(self) -> str:
        from raylane.examples.churn import write

        spec = self.spec
        write(spec, self.data_dir)
        return f"{spec.customers:,} customers, {spec.days} days, {spec.labels:,} labels → {self.data_dir}"

    def ingest(self) -> str:
        from raylane.ingest import ingest

        reports = ingest(self.cfg)
        return ", ".join(f"{r.source} {r.rows:,}" for r in reports) + " rows"

    def apply(self) -> str:
        return f"{len(self.repo.apply())} feature views, service {self.cfg.feature_service_name}"

    def materialize(self) -> str:
        reports = self.repo.materialize()
        return ", ".join(f"{r.view} {r.rows:,}" for r in reports) + " rows → online store"

    def training_set(self) -> str:
        frame = self.repo.training_set().to_pandas()
        self.frame = frame
        label = self.cfg.data.labels.column
        features = list(self.cfg.feature_dtypes())
        complete = frame[features].notna().all(axis=1).mean()
        return (
            f"{len(frame):,} rows × {len(features)} features, label rate {frame[label].mean():.1%},"
            f" {complete:.0%} rows complete"
        )

    def online(self) -> str:
        key = self.key
        keys = list(dict.fromkeys(self.frame[key].tolist()))[:3]
        reader = self.repo.online()
        reader.get(keys)  # warm
        started = time.perf_counter()
        result = reader.get(keys)
        ms = (time.perf_counter() - started) * 1000
        first = {f: result[f][0] for f in list(self.cfg.feature_dtypes())[:3]}
        return f"{len(keys)} entities in {ms:.1f} ms; {key}={keys[0]}: {first}"

    def train_and_gate(self) -> str:
        from raylane.training import train

        cfg = self.cfg
        result = train(cfg)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
        return f"{cfg.model_name} v{result.version} ({result.epochs} epochs): {shown}; {_verdict(result.promoted)}"

    def small_sweep(self) -> str:
        from raylane.sweep import sweep

        cfg = self.cfg
        # A demo-sized sweep of the config's search space: 2 trials at once of at most 3 epochs
        # (`raylane sweep` runs the config's full one).
        tune = cfg.tune.model_copy(
            update={
                "num_samples": min(cfg.tune.num_samples, 2),
                "scheduler": cfg.tune.scheduler.model_copy(update={"max_t": 3, "grace_period": 1}),
            }
        )
        result = sweep(cfg.model_copy(update={"tune": tune}))
        trained = result.train
        assert trained is not None
        return (
            f"{len(result.trials)} trials ({result.count('stopped_early')} stopped early by ASHA), best val"
            f" {result.metric} {result.best.best:.3f}; v{trained.version} {_verdict(trained.promoted)}"
        )

    # ----- serving it: traffic → monitor → drift → retrain → new champion

    def api_headers(self) -> dict[str, str] | None:
        from raylane.serving import api_key

        secret = api_key(self.cfg)
        return {"X-API-Key": secret} if secret else None

    def serve_stages(self) -> list[Stage]:
        return [
            ("serve → traffic → inference log, monitor (Ray Serve, whylogs)", self.serve_traffic),
            ("new data arrives (generator's drift knob) → ingest → materialize", self.new_data),
            ("drifted traffic → drift → retrain job → new champion serving", self.closed_loop),
        ]

    def traffic(self, keys: list[Any], requests: int) -> Any:
        """Send ``requests`` predictions for ``keys`` (cycled), 8 at a time; the load report."""
        from raylane.serving.load import run_load

        key = self.key
        return run_load(
            self.record.url + "/predict",
            lambda i: {key: keys[i % len(keys)]},
            concurrency=8,
            requests=requests,
            headers=self.headers,
        )

    def serve_traffic(self) -> str:
        import shutil

        import pandas as pd

        from raylane.inference_log import read_predictions
        from raylane.monitoring import monitor_dir
        from raylane.serving import Client, deploy

        cfg, key = self.cfg, self.key
        shutil.rmtree(monitor_dir(cfg), ignore_errors=True)  # each demo is a new episode (no old cooldown)
        self.record = record = deploy(cfg, embedded=True)  # starts the project's monitor too
        keys = pd.Series(self.frame[key]).drop_duplicates().head(500).tolist()
        self.keys = keys
        client = Client(cfg)
        answer = client.predict([{key: k} for k in keys[:5]])
        client.feedback(answer["request_id"], 1, **{key: keys[0]})
        client.close()
        report = self.traffic(keys, 2 * (cfg.monitor.window_rows or 500))
        time.sleep(cfg.serve.inference_log.flush_seconds + 1)
        logged = len(read_predictions(cfg))
        return (
            f"v{record.model_version} at {record.url}: {report.ok}/{report.sent} ok, {report.throughput:.0f} req/s,"
            f" p50 {report.percentile(50):.0f} ms, p99 {report.percentile(99):.0f} ms; {logged:,} predictions logged"
        )

    def new_data(self) -> str:
        from raylane.examples.churn import write
        from raylane.ingest import ingest

        spec = self.spec
        drifted = replace(spec, days=spec.days + 30, drift_start_day=spec.days)
        write(drifted, self.data_dir)
        ingest(self.cfg)
        reports = self.repo.materialize()
        return (
            f"{drifted.days - spec.days} more days, drift from day {spec.days}: engagement falls, charges rise;"
            f" {sum(r.rows for r in reports):,} rows → online store"
        )

    def closed_loop(self) -> str:
        return _ClosedLoop(self.cfg, self.keys, self.traffic, started=time.monotonic()).run()

    def undeploy(self) -> None:
        if self.record is not None:
            from raylane.serving import undeploy

            undeploy(self.cfg)  # replicas write their buffered log and profiles before they stop


def _verdict(promoted: bool | None) -> str:
    return "promoted to champion" if promoted else "stays challenger"


@dataclass
class _ClosedLoop:
    """Send drifted traffic until the monitor submits a retrain; wait for the job and for the
    replicas to answer with the new champion; `run` returns the timeline."""

    cfg: ProjectConfig
    keys: list[Any]
    traffic: Callable[[list[Any], int], Any]
    started: float
    timeline: list[str] = field(default_factory=list)
    seen_windows: set[int] = field(default_factory=set)

    def at(self) -> str:
        return f"+{time.monotonic() - self.started:5.1f}s"

    def run(self) -> str:
        from raylane.monitoring import MonitorStore

        for w in MonitorStore(self.cfg).windows():
            self.seen_windows.add(w.window)
            self.timeline.append(f"window {w.window}: {w.rows} rows, {len(w.drifted_features)} features drifted")
        submitted = self.drift_until_retrain()
        deadline = time.monotonic() + RETRAIN_TIMEOUT_S
        result = self.wait_for_job(submitted, deadline)
        if result.get("promoted"):
            self.wait_for_champion(str(result["version"]), deadline)
        return "\n".join(self.timeline)

    def drift_until_retrain(self) -> DecisionRecord:
        """Drifted traffic, a window's worth at a time, until the monitor submits a retrain job."""
        from raylane.monitoring import MonitorStore

        cfg = self.cfg
        submitted = None
        for _ in range(MAX_DRIFTED_WINDOWS):
            self.traffic(self.keys, cfg.monitor.window_rows or 500)
            time.sleep(cfg.monitor.flush_seconds + 1)
            self.note_new_windows()
            submitted = next((d for d in MonitorStore(cfg).decisions() if d.action == "retrain"), None)
            if submitted:
                break
        if submitted is None:
            raise UserError(
                "the monitor found no drift in the drifted traffic", fix="see `raylane monitor status CONFIG`"
            )
        self.timeline.append(
            f"{self.at()} {submitted.reasons[0]} → retrain job {submitted.job_id} ({submitted.status})"
        )
        if submitted.status != "SUBMITTED":
            raise UserError(f"the retrain job could not be submitted: {submitted.error}", fix="see the error")
        return submitted

    def note_new_windows(self) -> None:
        from raylane.monitoring import MonitorStore

        for w in MonitorStore(self.cfg).windows():
            if w.window in self.seen_windows:
                continue
            self.seen_windows.add(w.window)
            drifted = ", ".join(w.drifted_features) or "none"
            self.timeline.append(f"{self.at()} window {w.window}: {w.rows} rows, drifted: {drifted} → {w.html}")

    def wait_for_job(self, submitted: DecisionRecord, deadline: float) -> dict[str, Any]:
        """The retrain job's outcome, once the monitor records it ended; it must have succeeded."""
        from raylane.monitoring import MonitorStore

        ended = None
        while ended is None and time.monotonic() < deadline:
            time.sleep(2)
            ended = next((d for d in MonitorStore(self.cfg).decisions() if d.action == "retrain_ended"), None)
        if ended is None or ended.status != SUCCEEDED:
            status = "timed out" if ended is None else ended.status
            raise UserError(
                f"the retrain job {submitted.job_id} did not succeed: {status}",
                fix=f"`ray job logs {submitted.job_id}` shows why",
            )
        result: dict[str, Any] = ended.result or {}
        verdict = "promoted to champion" if result.get("promoted") else "not promoted"
        self.timeline.append(f"{self.at()} job SUCCEEDED: v{result.get('version')} {verdict} ({result.get('gate')})")
        return result

    def wait_for_champion(self, version: str, deadline: float) -> None:
        """Ask the service until its replicas answer with ``version`` (they reload it without a restart)."""
        from raylane.serving import Client

        client = Client(self.cfg)
        try:
            while time.monotonic() < deadline:
                answer = client.predict([{self.cfg.entity.join_key: self.keys[0]}])
                if str(answer["model"]["version"]) == version:
                    self.timeline.append(
                        f"{self.at()} replicas answer with v{version} (no restart, no dropped request)"
                    )
                    break
                time.sleep(0.5)
        finally:
            client.close()
