"""The demo loop on the example project, step by step (``raylane demo run``, ``make demo``).

It runs every stage that exists on freshly generated churn data and returns one summary row per
step: data → ingestion → Feast (apply, materialize, training set, online lookup) → training on
Ray Train with MLflow tracking → registry and promotion gate → a small Ray Tune sweep whose best
trial goes through the same gate → the champion served on Ray Serve under sample traffic, every
prediction in the inference log. Needs Ray (the caller starts it, see `raylane.runtime`).
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
    then train, register and gate a model, then sweep and gate the best trial's model."""
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

        # A demo-sized sweep of the config's search space: 4 trials of at most 4 epochs.
        tune = cfg.tune.model_copy(
            update={
                "num_samples": min(cfg.tune.num_samples, 4),
                "scheduler": cfg.tune.scheduler.model_copy(update={"max_t": 4, "grace_period": 1}),
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

    def serve_traffic() -> str:
        import pandas as pd

        from raylane.serving import Client, api_key, deploy, undeploy
        from raylane.serving.inference_log import read
        from raylane.serving.load import run_load

        record = deploy(cfg, embedded=True)
        try:
            key = cfg.entity.join_key
            keys = pd.Series(holder["frame"][key]).drop_duplicates().head(200).tolist()
            client = Client(cfg)
            answer = client.predict([{key: k} for k in keys[:5]])
            client.feedback(answer["request_id"], 1, **{key: keys[0]})
            client.close()
            report = run_load(
                record.url + "/predict",
                lambda i: {key: keys[i % len(keys)]},
                concurrency=8,
                requests=400,
                headers={"X-API-Key": secret} if (secret := api_key(cfg)) else None,
            )
        finally:
            undeploy(cfg)  # replicas write their buffered log before they stop
        logged = len(read(cfg))
        return (
            f"v{record.model_version} at {record.url}: {report.ok}/{report.sent} ok, {report.throughput:.0f} req/s,"
            f" p50 {report.percentile(50):.0f} ms, p99 {report.percentile(99):.0f} ms; {logged:,} predictions logged"
        )

    timed("serve → traffic → inference log (Ray Serve)", serve_traffic)
    return rows
