"""Monitoring benchmark: what profiling costs serving, whether the monitor stays flat, how fast it acts.

1. Serving throughput with monitoring on vs off: two deployments of the same model (one replica
   each, inference log on in both) side by side, measured in alternating rounds (median of 3) at
   concurrency 1 and 32, replicas sending a profile at the default pace (``monitor.flush_rows`` /
   ``flush_seconds``; ``--flush-rows`` / ``--flush-seconds`` change it). Target: on/off >= 0.95.
2. The monitor's memory and profile size from 10k to 1M rows: a monitor (in this process) takes
   1,000-row profiles into one window that never closes; its merged profile's size and this
   process's resident memory at 10k and at 1M rows. Target: flat within ±25%.
3. Time from drift onset (drifted data reaches the online store) to the retrain job submitted,
   with traffic at concurrency 8 and a profile every 100 rows or 1 s (the job is stopped once
   submitted).

Run: `.venv/bin/python benchmarks/monitor.py [--seconds 5] [--flush-rows 1000] [--flush-seconds 5]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from raylane import runtime
from raylane.config import MonitorConfig
from raylane.examples.churn import SIZES, write
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.monitoring import Monitor, monitor_dir, read_decisions
from raylane.profiling import profile
from raylane.serving import deploy, undeploy
from raylane.serving.load import LoadReport, run_load
from raylane.testing import example_project, free_port
from raylane.training import train


def _median(reports: list[LoadReport]) -> LoadReport:
    return sorted(reports, key=lambda r: r.throughput)[len(reports) // 2]


def overhead(cfg: Any, keys: list[int], seconds: float, rounds: int) -> dict[str, dict[int, LoadReport]]:
    off = cfg.model_copy(
        update={
            "serve": cfg.serve.model_copy(update={"route_prefix": "/nomon"}),
            "monitor": cfg.monitor.model_copy(update={"enabled": False}),
        }
    )
    record = deploy(cfg)
    deploy(off, name="nomon")
    services = {"monitoring on": record.url + "/predict", "monitoring off": f"{record.url}/nomon/predict"}

    def body(i: int) -> Any:
        return {"customer_id": keys[i % len(keys)]}

    for url in services.values():
        run_load(url, body, concurrency=4, duration_s=2)  # warm up
    by: dict[str, dict[int, list[LoadReport]]] = {n: {1: [], 32: []} for n in services}
    for _ in range(rounds):
        for c in (1, 32):
            for name, url in services.items():
                by[name][c].append(run_load(url, body, concurrency=c, duration_s=seconds))
    undeploy(off, name="nomon")
    undeploy(cfg)
    return {n: {c: _median(r) for c, r in per.items()} for n, per in by.items()}


def flat(cfg: Any) -> list[tuple[int, int, float]]:
    """(rows, merged profile bytes, RSS MiB) at 10k, 100k and 1M rows in one window."""
    shutil.rmtree(monitor_dir(cfg), ignore_errors=True)
    data = cfg.model_dump(mode="json")
    data["monitor"] |= {"window_rows": None, "window_seconds": 1e9, "triggers": {"drifted_features": None}}
    monitor = Monitor(data)
    rng = np.random.default_rng(0)
    features = list(cfg.feature_dtypes())
    latest = pd.read_parquet(cfg.storage_root / "offline" / "activity")
    profiles = pd.read_parquet(cfg.storage_root / "offline" / "profiles")
    base = profiles.sample(1000, replace=True, random_state=1).reset_index(drop=True)
    act = latest.sample(1000, replace=True, random_state=2).reset_index(drop=True)
    frame = pd.concat([base, act.drop(columns=[c for c in act if c in base])], axis=1)[features]
    blobs = []
    for i in range(10):  # ten distinct 1,000-row profiles, sent again and again under new ids
        f = frame.sample(frac=1.0, random_state=i).reset_index(drop=True)
        f["prediction"] = rng.random(len(f))
        blobs.append(profile(f).serialize())
    proc = psutil.Process()
    points = []
    sent = 0
    for target in (10_000, 100_000, 1_000_000):
        while sent < target:
            sent += monitor.ingest(f"bench-{sent:09d}", blobs[(sent // 1000) % 10])
        points.append((sent, len(monitor.merged.serialize()), proc.memory_info().rss / 2**20))
    monitor.shutdown()
    shutil.rmtree(monitor_dir(cfg), ignore_errors=True)
    return points


def onset_to_retrain(cfg: Any, keys: list[int]) -> float:
    """Seconds from drifted data in the online store to the retrain job submitted."""
    from raylane.jobs import client

    shutil.rmtree(monitor_dir(cfg), ignore_errors=True)
    record = deploy(cfg)
    try:
        run_load(record.url + "/predict", lambda i: {"customer_id": keys[i % len(keys)]}, concurrency=8, requests=600)
        spec = SIZES["tiny"]
        write(replace(spec, days=spec.days + 30, drift_start_day=spec.days), cfg.data.sources[0].path.parent)
        ingest(cfg)
        FeatureRepo(cfg).materialize()
        onset = time.monotonic()
        while time.monotonic() - onset < 300:
            run_load(
                record.url + "/predict", lambda i: {"customer_id": keys[i % len(keys)]}, concurrency=8, requests=100
            )
            submitted = [d for d in read_decisions(cfg) if d["action"] == "retrain"]
            if submitted:
                elapsed = time.monotonic() - onset
                if submitted[0].get("job_id"):
                    client().stop_job(submitted[0]["job_id"])
                return elapsed
        raise RuntimeError("no retrain was submitted within 300 s")
    finally:
        undeploy(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="Load per measurement.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds; the median is reported.")
    defaults = MonitorConfig()
    parser.add_argument("--flush-rows", type=int, default=defaults.flush_rows, help="Phase 1: rows per profile.")
    parser.add_argument(
        "--flush-seconds", type=float, default=defaults.flush_seconds, help="Phase 1: seconds per profile at most."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="raylane-bench-") as tmp, runtime.ray_session():
        cfg = example_project(
            Path(tmp),
            overrides=[
                "train.epochs=2",
                "registry.promotion.floor=null",
                f"serve.port={free_port()}",
                "serve.autoscaling.min_replicas=1",
                "serve.autoscaling.max_replicas=1",
                "monitor.window_rows=300",
                "monitor.flush_rows=100",
                "monitor.flush_seconds=1",
            ],
        )
        ingest(cfg)
        repo = FeatureRepo(cfg)
        repo.apply()
        repo.materialize()
        train(cfg)
        keys = [int(k) for k in pd.read_parquet(cfg.data.source("profiles").path)["customer_id"].unique()[:200]]
        paced = cfg.monitor.model_copy(update={"flush_rows": args.flush_rows, "flush_seconds": args.flush_seconds})
        results = overhead(cfg.model_copy(update={"monitor": paced}), keys, args.seconds, args.rounds)
        points = flat(cfg)
        seconds = onset_to_retrain(cfg, keys)

    print(f"\nprofiles every {args.flush_rows} rows or {args.flush_seconds:g} s")
    print(f"{'service':18} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6}")
    for name, by_c in results.items():
        for c, r in by_c.items():
            print(
                f"{name:18} {c:>4} {r.throughput:>8.0f} {r.percentile(50):>8.1f} {r.percentile(99):>8.1f} {r.failed:>6}"
            )
    for c in (1, 32):
        ratio = results["monitoring on"][c].throughput / results["monitoring off"][c].throughput
        print(
            f"concurrency {c:>2}: on/off throughput {ratio:.3f} (target >= 0.95) {'ok' if ratio >= 0.95 else 'MISSED'}"
        )
    print(f"\n{'rows':>10} {'profile KB':>11} {'RSS MiB':>8}")
    for rows, size, rss in points:
        print(f"{rows:>10,} {size / 1024:>11.1f} {rss:>8.0f}")
    (r0, s0, m0), (r1, s1, m1) = points[0], points[-1]
    size_ok, mem_ok = abs(s1 / s0 - 1) <= 0.25, abs(m1 / m0 - 1) <= 0.25
    print(
        f"{r0:,} → {r1:,} rows: profile size ×{s1 / s0:.2f}, memory ×{m1 / m0:.2f} (target within ±25%)"
        f" {'ok' if size_ok and mem_ok else 'MISSED'}"
    )
    print(f"\ndrift onset → retrain job submitted: {seconds:.1f} s (window 300 rows, traffic at concurrency 8)")


if __name__ == "__main__":
    os.environ.setdefault("RAY_SERVE_LOG_LEVEL", "WARNING")
    main()
