"""Rollout benchmark: /predict latency with a shadow rollout on, as a ratio to the same service without.

One replica serves the churn example's champion; a second version (the same artifact registered
again) is the challenger. Rounds alternate: no rollout, then a shadow rollout of the challenger
(every answered request also scored by it, off the response path), then a canary at 50 %; each
switch waits until the replica follows it (``/metadata``), then 2 s of unmeasured load (every
mode alike: what is measured is the steady state, not the switch). The load is a closed loop at
concurrency 1 and 8 by raylane's load generator. Prints p50/p99 and throughput per mode (median of
the rounds) and the ratio p50(shadow) / p50(off), target <= 1.2.

Run: `.venv/bin/python benchmarks/rollout.py [--seconds 8] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from raylane import runtime
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.registry import Registry
from raylane.serving import deploy, undeploy
from raylane.serving.load import run_load
from raylane.testing import example_project, free_port
from raylane.training import train

MODES = ("off", "shadow", "canary 50%")


def _follow(url: str, want: str | None, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        active = httpx.get(url + "/metadata", timeout=30).json()["rollout"]["active"]
        if (active or {}).get("mode") == want:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the replica did not follow the rollout ({want}) within {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="Load per measurement.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds; the median is reported.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="raylane-bench-") as tmp, runtime.ray_session():
        overrides = [
            "train.epochs=2",
            "registry.promotion.floor=null",
            f"serve.port={free_port()}",
            "serve.autoscaling.min_replicas=1",
            "serve.autoscaling.max_replicas=1",
            "serve.model_poll_s=0.5",
            "serve.rollout.steps=[50]",
            "serve.rollout.min_labels=1000000",  # the monitor never ends the canary during the benchmark
            "monitor.triggers.drifted_features=null",  # no retrain competes for the CPU
        ]
        cfg = example_project(Path(tmp), overrides=overrides)
        ingest(cfg)
        repo = FeatureRepo(cfg)
        repo.apply()
        repo.materialize()
        train(cfg)
        reg = Registry(cfg)
        champion = reg.champion()
        keys = pd.read_parquet(cfg.data.source("profiles").path)["customer_id"].drop_duplicates().head(200).tolist()
        url = deploy(cfg).url

        def body(i: int) -> Any:
            return {"customer_id": int(keys[i % len(keys)])}

        results: dict[str, dict[int, list[Any]]] = {m: {1: [], 8: []} for m in MODES}
        run_load(url + "/predict", body, concurrency=4, duration_s=3)  # warm up
        for _ in range(args.rounds):
            for mode in MODES:
                if mode == "off":
                    _follow(url, None)
                else:
                    version = reg.register(champion.source, champion.run_id, dict(champion.tags))
                    reg.start_rollout(version, mode.split()[0])
                    _follow(url, mode.split()[0])
                run_load(url + "/predict", body, concurrency=4, duration_s=2)  # unmeasured: past the switch
                for c in (1, 8):
                    results[mode][c].append(run_load(url + "/predict", body, concurrency=c, duration_s=args.seconds))
                if mode == "shadow":  # what the challenger did meanwhile
                    print("shadow:", httpx.get(url + "/metadata", timeout=30).json()["rollout"].get("shadow"))
                if mode != "off":
                    if reg.current_rollout() is None:  # the monitor ended it: a guard tripped
                        tags = reg.version(version).tags
                        print(f"the monitor ended the {mode} rollout early: {tags.get('rollout.reason')}")
                    else:
                        reg.end_rollout("abort", "benchmark round over")
        undeploy(cfg)

    print(f"\nmedian of {args.rounds} rounds of {args.seconds:g} s, one replica, raylane's load generator")
    print(f"{'mode':12} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6}")
    p50: dict[tuple[str, int], float] = {}
    for mode, by_c in results.items():
        for c, reports in by_c.items():
            p50[mode, c] = statistics.median(r.percentile(50) for r in reports)
            p99 = statistics.median(r.percentile(99) for r in reports)
            rps = statistics.median(r.throughput for r in reports)
            failed = sum(r.failed for r in reports)
            print(f"{mode:12} {c:>4} {rps:>8.0f} {p50[mode, c]:>8.2f} {p99:>8.2f} {failed:>6}")
    print()
    for c in (1, 8):
        ratio = p50["shadow", c] / p50["off", c]
        canary = p50["canary 50%", c] / p50["off", c]
        verdict = "ok" if ratio <= 1.2 else "MISSED"
        print(f"concurrency {c}: p50 shadow/off {ratio:.2f} (target <= 1.2) {verdict}; canary 50%/off {canary:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("RAY_SERVE_LOG_LEVEL", "WARNING")
    main()
