"""Serving benchmark: raylane's /predict against a bare Ray Serve deployment and plain FastAPI.

Three services answer for the same model version, each with one replica/process, on loopback:

- (a) raylane ``/predict``: validation, one Feast online lookup per batch, the model, the inference log;
- (b) a bare Ray Serve deployment of the same model, the features passed in the request;
- (c) the same model in a plain FastAPI app under uvicorn (one process), features passed in.

(a), (b) and (a) without batching run side by side and are measured in alternating rounds
(median of 3). Each is loaded (closed loop, Python aiohttp generator; ``wrk`` is not used even when installed, so
that all get the same client) at concurrency 1 and 32. Reports throughput and p50/p99, and the
targets: (a)/(b) throughput >= 0.7 and (a) - (b) p50 <= 2 ms; and batching on over off.

Run: `.venv/bin/python benchmarks/serve.py [--seconds 8]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from raylane import runtime
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.registry import Registry
from raylane.serving import deploy, undeploy
from raylane.serving.load import LoadReport, run_load
from raylane.testing import example_project, free_port
from raylane.train import train


def bare_app(bundle_dir: str) -> Any:
    """(b): Ray Serve, no raylane: JSON features in, the bundle's predictions out."""
    from ray import serve
    from starlette.requests import Request

    @serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.5})
    class Bare:
        def __init__(self, folder: str) -> None:
            import torch

            from raylane.bundle import ModelBundle

            torch.set_num_threads(1)
            self.bundle = ModelBundle.load(Path(folder))

        async def __call__(self, request: Request) -> dict[str, Any]:
            body = await request.json()
            frame = pd.DataFrame(body["entities"], dtype=object)
            return {"predictions": self.bundle.predict(frame).tolist()}

    return Bare.bind(bundle_dir)


def uvicorn_main(bundle_dir: str, port: int) -> None:
    """(c): the same model under plain FastAPI/uvicorn (run as a subprocess)."""
    import torch
    import uvicorn
    from fastapi import FastAPI, Request

    from raylane.bundle import ModelBundle

    torch.set_num_threads(1)
    bundle = ModelBundle.load(Path(bundle_dir))
    api = FastAPI()

    @api.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        body = await request.json()
        frame = pd.DataFrame(body["entities"], dtype=object)
        return {"predictions": bundle.predict(frame).tolist()}

    uvicorn.run(api, host="127.0.0.1", port=port, log_level="warning")


def measure(url: str, body: Any, seconds: float, headers: dict[str, str] | None = None) -> dict[int, LoadReport]:
    run_load(url, body, concurrency=4, duration_s=2, headers=headers)  # warm up
    return {c: run_load(url, body, concurrency=c, duration_s=seconds, headers=headers) for c in (1, 32)}


def _median(reports: list[LoadReport]) -> LoadReport:
    """The round with the median throughput (its latencies come with it)."""
    return sorted(reports, key=lambda r: r.throughput)[len(reports) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="Load per measurement.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds; the median is reported.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="raylane-bench-") as tmp, runtime.ray_session():
        from ray import serve

        port = free_port()
        overrides = [
            "train.epochs=2",
            "registry.promotion.floor=null",
            f"serve.port={port}",
            "serve.autoscaling.min_replicas=1",
            "serve.autoscaling.max_replicas=1",
        ]
        cfg = example_project(Path(tmp), overrides=overrides)
        ingest(cfg)
        repo = FeatureRepo(cfg)
        repo.apply()
        repo.materialize()
        train(cfg)
        keys = pd.read_parquet(cfg.data.source("profiles").path)["customer_id"].drop_duplicates().head(200).tolist()
        looked = repo.online().get(keys)
        features = [{f: looked[f][i] for f in cfg.feature_dtypes()} for i in range(len(keys))]
        bundle_dir = Path(tmp) / "bundle"
        Registry(cfg).load_bundle("1").save(bundle_dir)

        def raylane_body(i: int) -> Any:
            return {"customer_id": keys[i % len(keys)]}

        def features_body(i: int) -> Any:
            return {"entities": [features[i % len(features)]]}

        # (a), (a) without batching and (b) run side by side (one replica each) and are measured
        # in alternating rounds, so that a slow moment of the machine does not favour one of them.
        record = deploy(cfg)
        off = cfg.model_copy(
            update={
                "serve": cfg.serve.model_copy(
                    update={
                        "route_prefix": "/nobatch",
                        "batching": cfg.serve.batching.model_copy(update={"enabled": False}),
                    }
                ),
            }
        )
        deploy(off, name="nobatch")
        serve.run(bare_app(str(bundle_dir)), name="bare", route_prefix="/bare")
        services = {
            "(a) raylane /predict": (record.url + "/predict", raylane_body),
            "(b) bare Ray Serve": (f"http://127.0.0.1:{port}/bare", features_body),
            "(a) raylane, batching off": (f"http://127.0.0.1:{port}/nobatch/predict", raylane_body),
        }
        rounds: dict[str, dict[int, list[LoadReport]]] = {name: {1: [], 32: []} for name in services}
        for url, body in services.values():
            run_load(url, body, concurrency=4, duration_s=2)  # warm up
        for _ in range(args.rounds):
            for c in (1, 32):
                for name, (url, body) in services.items():
                    rounds[name][c].append(run_load(url, body, concurrency=c, duration_s=args.seconds))
        results: dict[str, dict[int, LoadReport]] = {
            name: {c: _median(r) for c, r in by_c.items()} for name, by_c in rounds.items()
        }
        undeploy(off, name="nobatch")
        serve.delete("bare")
        undeploy(cfg)
        uport = free_port()
        proc = subprocess.Popen([sys.executable, __file__, "--uvicorn", str(bundle_dir), str(uport)])
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                probe = run_load(f"http://127.0.0.1:{uport}/predict", features_body, concurrency=1, requests=1)
                if probe.ok:
                    break
                time.sleep(0.5)
            results["(c) FastAPI/uvicorn"] = measure(f"http://127.0.0.1:{uport}/predict", features_body, args.seconds)
        finally:
            proc.terminate()
            proc.wait()

    print(f"\n{'service':32} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6}")
    for name, by_c in results.items():
        for c, r in by_c.items():
            print(
                f"{name:32} {c:>4} {r.throughput:>8.0f} {r.percentile(50):>8.1f} {r.percentile(99):>8.1f} {r.failed:>6}"
            )
    a, b = results["(a) raylane /predict"], results["(b) bare Ray Serve"]
    off_ = results["(a) raylane, batching off"]
    print()
    for c in (1, 32):
        ratio = a[c].throughput / b[c].throughput
        added = a[c].percentile(50) - b[c].percentile(50)
        print(
            f"concurrency {c:>2}: (a)/(b) throughput {ratio:.2f} (target >= 0.7) {'ok' if ratio >= 0.7 else 'MISSED'};"
            f" p50 added {added:+.1f} ms (target <= 2) {'ok' if added <= 2 else 'MISSED'};"
            f" batching on/off throughput {a[c].throughput / off_[c].throughput:.2f}"
        )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--uvicorn":
        uvicorn_main(sys.argv[2], int(sys.argv[3]))
    else:
        os.environ.setdefault("RAY_SERVE_LOG_LEVEL", "WARNING")
        main()
