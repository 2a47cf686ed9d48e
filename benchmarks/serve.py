"""Serving benchmark: raylane's /predict against a bare Ray Serve deployment and plain FastAPI.

Three services answer for the same model version, each with one replica/process, on loopback:

- (a) raylane ``/predict``: validation, one Feast online lookup per batch, the model, the inference log;
- (b) a bare Ray Serve deployment of the same model, the features passed in the request;
- (c) the same model in a plain FastAPI app under uvicorn (one process), features passed in.

(a), (b) and (a) without batching run side by side and are measured in alternating rounds
(median of 3). Each is loaded in a closed loop at concurrency 1 and 32 by ``wrk`` when it is
installed (``apt-get install wrk``; a Lua script cycles the request bodies), else by raylane's
Python (aiohttp) load generator; every service gets the same client, which the output names.
Reports throughput and p50/p99, and the targets: (a)/(b) throughput >= 0.7 and (a) - (b) p50
<= 2 ms; and batching on over off.

Run: `.venv/bin/python benchmarks/serve.py [--seconds 5] [--rounds 3] [--client auto|wrk|python]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

# At module level: FastAPI resolves the (string) annotation `request: Request` in the module's
# globals; imported inside the function, it took `request` for a required query parameter (422).
from fastapi import FastAPI, Request

from raylane import runtime
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.registry import Registry
from raylane.serving import deploy, undeploy
from raylane.serving.load import run_load
from raylane.testing import example_project, free_port
from raylane.training import train


def bare_app(bundle_dir: str) -> Any:
    """(b): Ray Serve, no raylane: JSON features in, the bundle's predictions out."""
    from ray import serve

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


@dataclass
class Measured:
    """One closed-loop measurement, whichever client took it."""

    throughput: float  # answered requests (2xx) per second
    p50_ms: float
    p99_ms: float
    failed: int  # non-2xx answers, connection errors and timeouts


_WRK_SCRIPT = """
local bodies = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  local failed = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format("RAYLANE %%d %%d %%d %%f %%f\\n", summary.requests, summary.duration, failed,
    latency:percentile(50), latency:percentile(99)))
end
"""


class Client:
    """Sends a closed-loop load at a service: ``wrk`` (C, event loop per thread) or raylane's Python generator."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.folder = folder
        self.scripts: dict[Callable[[int], Any], Path] = {}  # one wrk script per body function

    def _script(self, body: Callable[[int], Any]) -> Path:
        if body not in self.scripts:
            texts = (json.dumps(body(i)) for i in range(200))  # the bodies the service cycles through
            path = self.folder / f"wrk-{len(self.scripts)}.lua"
            path.write_text(_WRK_SCRIPT % ", ".join(f"[==[{t}]==]" for t in texts))
            self.scripts[body] = path
        return self.scripts[body]

    def load(self, url: str, body: Callable[[int], Any], concurrency: int, seconds: float) -> Measured:
        if self.kind == "python":
            r = run_load(url, body, concurrency=concurrency, duration_s=seconds)
            return Measured(r.throughput, r.percentile(50), r.percentile(99), r.failed)
        threads = min(concurrency, 2)
        cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s"]
        out = subprocess.run([*cmd, "-s", str(self._script(body)), url], capture_output=True, text=True, check=True)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RAYLANE ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary: {out.stdout}{out.stderr}")
        requests, duration_us, failed, p50_us, p99_us = (float(v) for v in line.split()[1:])
        return Measured((requests - failed) / (duration_us / 1e6), p50_us / 1000, p99_us / 1000, int(failed))


def measure(client: Client, url: str, body: Any, seconds: float) -> dict[int, Measured]:
    client.load(url, body, concurrency=4, seconds=2)  # warm up
    return {c: client.load(url, body, concurrency=c, seconds=seconds) for c in (1, 32)}


def _median(reports: list[Measured]) -> Measured:
    """The round with the median throughput (its latencies come with it)."""
    return sorted(reports, key=lambda r: r.throughput)[len(reports) // 2]


def _measure_uvicorn(client: Client, bundle_dir: Path, body: Any, seconds: float) -> dict[int, Measured]:
    """(c): the same bundle behind a plain FastAPI app on uvicorn, in a process of its own."""
    uport = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--uvicorn", str(bundle_dir), str(uport)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            probe = run_load(f"http://127.0.0.1:{uport}/predict", body, concurrency=1, requests=1)
            if probe.ok:
                break
            time.sleep(0.5)
        return measure(client, f"http://127.0.0.1:{uport}/predict", body, seconds)
    finally:
        proc.terminate()
        proc.wait()


def _print(results: dict[str, dict[int, Measured]], kind: str, rounds: int, seconds: float) -> None:
    print(f"\nload generator: {kind}; median of {rounds} rounds of {seconds:g} s")
    print(f"{'service':32} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6}")
    for name, by_c in results.items():
        for c, r in by_c.items():
            print(f"{name:32} {c:>4} {r.throughput:>8.0f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.failed:>6}")
    a, b = results["(a) raylane /predict"], results["(b) bare Ray Serve"]
    off_ = results["(a) raylane, batching off"]
    print()
    for c in (1, 32):
        ratio = a[c].throughput / b[c].throughput
        added = a[c].p50_ms - b[c].p50_ms
        print(
            f"concurrency {c:>2}: (a)/(b) throughput {ratio:.2f} (target >= 0.7) {'ok' if ratio >= 0.7 else 'MISSED'};"
            f" p50 added {added:+.1f} ms (target <= 2) {'ok' if added <= 2 else 'MISSED'};"
            f" batching on/off throughput {a[c].throughput / off_[c].throughput:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="Load per measurement.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds; the median is reported.")
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="Load generator: wrk when installed (auto), or raylane's Python one.",
    )
    args = parser.parse_args()
    kind = args.client if args.client != "auto" else ("wrk" if shutil.which("wrk") else "python")
    if kind == "wrk" and not shutil.which("wrk"):
        parser.error("--client wrk: wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="raylane-bench-") as tmp, runtime.ray_session():
        from ray import serve

        client = Client(kind, Path(tmp))

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
        rounds: dict[str, dict[int, list[Measured]]] = {name: {1: [], 32: []} for name in services}
        for url, body in services.values():
            client.load(url, body, concurrency=4, seconds=2)  # warm up
        for _ in range(args.rounds):
            for c in (1, 32):
                for name, (url, body) in services.items():
                    rounds[name][c].append(client.load(url, body, concurrency=c, seconds=args.seconds))
        results: dict[str, dict[int, Measured]] = {
            name: {c: _median(r) for c, r in by_c.items()} for name, by_c in rounds.items()
        }
        undeploy(off, name="nobatch")
        serve.delete("bare")
        undeploy(cfg)
        results["(c) FastAPI/uvicorn"] = _measure_uvicorn(client, bundle_dir, features_body, args.seconds)

    _print(results, kind, args.rounds, args.seconds)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--uvicorn":
        uvicorn_main(sys.argv[2], int(sys.argv[3]))
    else:
        os.environ.setdefault("RAY_SERVE_LOG_LEVEL", "WARNING")
        main()
