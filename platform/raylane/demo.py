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
from dataclasses import replace
from typing import Any

from raylane.config import ProjectConfig
from raylane.errors import UserError

__all__ = ["run_demo"]

Row = tuple[str, str, float]


def run_demo(cfg: ProjectConfig, *, size: str = "small", step: Callable[[str], object] = print) -> list[Row]:
    """Generate data, ingest, apply, materialize, build the training set, look up online features,
    train, register and gate a model, sweep and gate the best trial's model, serve it under traffic
    with the monitor on, then let drifted data arrive and follow the loop to the retrained champion."""
    from raylane.examples.churn import SIZES, write
    from raylane.features import FeatureRepo
    from raylane.ingest import ingest

    if size not in SIZES:
        raise UserError(f"size {size!r} is not a demo size", fix=f"use one of {', '.join(SIZES)}")
    rows: list[Row] = []

    def timed(name: str, fn: Callable[[], str]) -> None:
        step(name)
        started = time.perf_counter()
        result = fn()
        rows.append((name, result, time.perf_counter() - started))

    data_dir = cfg.data.source(cfg.data.labels.source).path.parent
    spec = replace(SIZES[size])

    def generate() -> str:
        write(spec, data_dir)
        return f"{spec.customers:,} customers, {spec.days} days, {spec.labels:,} labels → {data_dir}"

    timed("generate data", generate)

    def do_ingest() -> str:
        reports = ingest(cfg)
        return ", ".join(f"{r.source} {r.rows:,}" for r in reports) + " rows"

    timed("ingest (Ray Data)", do_ingest)
    repo = FeatureRepo(cfg)
    timed("apply (Feast)", lambda: f"{len(repo.apply())} feature views, service {cfg.feature_service_name}")

    def materialize() -> str:
        reports = repo.materialize()
        return ", ".join(f"{r.view} {r.rows:,}" for r in reports) + " rows → online store"

    timed("materialize", materialize)
    holder: dict[str, Any] = {}

    def training_set() -> str:
        ds = repo.training_set()
        frame = ds.to_pandas()
        holder["frame"] = frame
        label = cfg.data.labels.column
        features = list(cfg.feature_dtypes())
        complete = frame[features].notna().all(axis=1).mean()
        return (
            f"{len(frame):,} rows × {len(features)} features, label rate {frame[label].mean():.1%},"
            f" {complete:.0%} rows complete"
        )

    timed("training set (point-in-time)", training_set)

    def online() -> str:
        frame = holder["frame"]
        key = cfg.entity.join_key
        keys = list(dict.fromkeys(frame[key].tolist()))[:3]
        reader = repo.online()
        reader.get(keys)  # warm
        started = time.perf_counter()
        result = reader.get(keys)
        ms = (time.perf_counter() - started) * 1000
        first = {f: result[f][0] for f in list(cfg.feature_dtypes())[:3]}
        return f"{len(keys)} entities in {ms:.1f} ms; {key}={keys[0]}: {first}"

    timed("online lookup", online)

    def train_and_gate() -> str:
        from raylane.train import train

        result = train(cfg)
        verdict = "promoted to champion" if result.promoted else "stays challenger"
        shown = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
        return f"{cfg.model_name} v{result.version} ({result.epochs} epochs): {shown}; {verdict}"

    timed("train → register → gate (Ray Train, MLflow)", train_and_gate)

    def small_sweep() -> str:
        from raylane.sweep import sweep

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
        verdict = "promoted to champion" if trained.promoted else "stays challenger"
        return (
            f"{len(result.trials)} trials ({result.count('stopped_early')} stopped early by ASHA), best val"
            f" {result.metric} {result.best.best:.3f}; v{trained.version} {verdict}"
        )

    timed("sweep → register → gate (Ray Tune, ASHA)", small_sweep)

    from raylane.serving import Client, api_key, deploy, undeploy
    from raylane.serving.load import run_load

    key = cfg.entity.join_key
    secret = api_key(cfg)
    headers = {"X-API-Key": secret} if secret else None
    record: Any = None

    def traffic(keys: list[Any], requests: int) -> Any:
        return run_load(
            record.url + "/predict",
            lambda i: {key: keys[i % len(keys)]},
            concurrency=8,
            requests=requests,
            headers=headers,
        )

    def serve_traffic() -> str:
        nonlocal record
        import shutil

        import pandas as pd

        from raylane.inference_log import read_predictions
        from raylane.monitoring import monitor_dir

        shutil.rmtree(monitor_dir(cfg), ignore_errors=True)  # each demo is a new episode (no old cooldown)
        record = deploy(cfg, embedded=True)  # starts the project's monitor too
        keys = pd.Series(holder["frame"][key]).drop_duplicates().head(500).tolist()
        holder["keys"] = keys
        client = Client(cfg)
        answer = client.predict([{key: k} for k in keys[:5]])
        client.feedback(answer["request_id"], 1, **{key: keys[0]})
        client.close()
        report = traffic(keys, 2 * (cfg.monitor.window_rows or 500))
        time.sleep(cfg.serve.inference_log.flush_seconds + 1)
        logged = len(read_predictions(cfg))
        return (
            f"v{record.model_version} at {record.url}: {report.ok}/{report.sent} ok, {report.throughput:.0f} req/s,"
            f" p50 {report.percentile(50):.0f} ms, p99 {report.percentile(99):.0f} ms; {logged:,} predictions logged"
        )

    def new_data() -> str:
        drifted = replace(spec, days=spec.days + 30, drift_start_day=spec.days)
        write(drifted, data_dir)
        ingest(cfg)
        reports = repo.materialize()
        return (
            f"{drifted.days - spec.days} more days, drift from day {spec.days}: engagement falls, charges rise;"
            f" {sum(r.rows for r in reports):,} rows → online store"
        )

    def closed_loop() -> str:
        return _closed_loop(cfg, record, holder["keys"], traffic, started=time.monotonic())

    try:
        timed("serve → traffic → inference log, monitor (Ray Serve, whylogs)", serve_traffic)
        timed("new data arrives (generator's drift knob) → ingest → materialize", new_data)
        timed("drifted traffic → drift → retrain job → new champion serving", closed_loop)
    finally:
        if record is not None:
            undeploy(cfg)  # replicas write their buffered log and profiles before they stop
    return rows


def _closed_loop(cfg: ProjectConfig, record: Any, keys: list[Any], traffic: Callable[..., Any], started: float) -> str:
    """Send drifted traffic until the monitor submits a retrain; wait for the job and for the
    replicas to answer with the new champion; return the timeline."""
    from raylane.monitoring import read_decisions, read_windows
    from raylane.serving import Client

    def at() -> str:
        return f"+{time.monotonic() - started:5.1f}s"

    timeline: list[str] = []
    seen_windows = {w["window"] for w in read_windows(cfg)}
    for w in read_windows(cfg):
        timeline.append(f"window {w['window']}: {w['rows']} rows, {len(w['drifted_features'])} features drifted")
    submitted = None
    for _ in range(8):  # a window's worth at a time, until the monitor acts
        traffic(keys, cfg.monitor.window_rows or 500)
        time.sleep(cfg.monitor.flush_seconds + 1)
        for w in read_windows(cfg):
            if w["window"] in seen_windows:
                continue
            seen_windows.add(w["window"])
            drifted = ", ".join(w["drifted_features"]) or "none"
            timeline.append(f"{at()} window {w['window']}: {w['rows']} rows, drifted: {drifted} → {w['html']}")
        submitted = next((d for d in read_decisions(cfg) if d["action"] == "retrain"), None)
        if submitted:
            break
    if submitted is None:
        raise UserError("the monitor found no drift in the drifted traffic", fix="see `raylane monitor status CONFIG`")
    timeline.append(f"{at()} {submitted['reasons'][0]} → retrain job {submitted['job_id']} ({submitted['status']})")
    if submitted["status"] != "SUBMITTED":
        raise UserError(f"the retrain job could not be submitted: {submitted.get('error')}", fix="see the error")
    deadline = time.monotonic() + 900
    ended = None
    while ended is None and time.monotonic() < deadline:
        time.sleep(2)
        ended = next((d for d in read_decisions(cfg) if d["action"] == "retrain_ended"), None)
    if ended is None or ended["status"] != "SUCCEEDED":
        raise UserError(
            f"the retrain job {submitted['job_id']} did not succeed: {(ended or {}).get('status', 'timed out')}",
            fix=f"`ray job logs {submitted['job_id']}` shows why",
        )
    result = ended.get("result") or {}
    verdict = "promoted to champion" if result.get("promoted") else "not promoted"
    timeline.append(f"{at()} job SUCCEEDED: v{result.get('version')} {verdict} ({result.get('gate')})")
    if result.get("promoted"):
        client = Client(cfg)
        try:
            while time.monotonic() < deadline:
                answer = client.predict([{cfg.entity.join_key: keys[0]}])
                if str(answer["model"]["version"]) == str(result["version"]):
                    timeline.append(
                        f"{at()} replicas answer with v{result['version']} (no restart, no dropped request)"
                    )
                    break
                time.sleep(0.5)
        finally:
            client.close()
    return "\n".join(timeline)
