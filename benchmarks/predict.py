"""Batch inference benchmark: `raylane predict` against a plain single-process loop, and its memory.

On the tiny churn example with a trained champion, ``--rows`` entity rows (customers sampled with
times spread over the data) are scored twice in one run:

- `raylane predict` (Ray Data, ``--actors`` scoring actors, offline features as of each row);
- a plain loop in this process: pandas reads the entities, Feast's point-in-time join
  (`FeatureRepo.join`), the same bundle's `predict`, pandas writes parquet.

Reports rows/s of each and their ratio (target >= 1.0 with 2 actors on a 2-core machine), and the
peak resident memory of the whole job (this process and every Ray process, sampled) at ``--rows``
against ``--rows / 10`` (target: ratio <= 1.25, memory does not grow with rows).

Run: `.venv/bin/python benchmarks/predict.py [--rows 1000000] [--actors 2]`.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from raylane import runtime
from raylane.batch import predict
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.registry import Registry
from raylane.testing import example_project, offline_table
from raylane.training import train


class PeakMemory:
    """Peak summed memory of this process and every Ray process on the machine, sampled every 0.2 s:
    RSS (the object store's shared pages count once per process that maps them) and PSS (each
    shared page split among the processes that share it: the job's real footprint)."""

    def __init__(self) -> None:
        self.peak, self.peak_pss, self.processes, self._stop = 0, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        for tick in itertools.count():
            if self._stop.is_set():
                break
            full = tick % 5 == 0  # PSS reads each process's page tables: once a second
            rss = pss = count = 0
            for p in psutil.process_iter(["cmdline"]):
                try:
                    if p.pid == me.pid or "ray" in " ".join(p.info["cmdline"] or []):
                        rss, count = rss + p.memory_info().rss, count + 1
                        pss += p.memory_full_info().pss if full else 0
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            if rss > self.peak:
                self.peak, self.processes = rss, count
            self.peak_pss = max(self.peak_pss, pss)
            time.sleep(0.2)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def entities(cfg, rows: int, path: Path) -> Path:  # type: ignore[no-untyped-def]
    activity = offline_table(cfg, "activity")
    rng = np.random.default_rng(0)
    lo, hi = activity["event_timestamp"].min(), activity["event_timestamp"].max()
    frame = pd.DataFrame(
        {
            "customer_id": rng.choice(activity["customer_id"].unique(), size=rows).astype("int64"),
            "label_timestamp": pd.to_datetime(lo + (hi - lo) * rng.uniform(0.2, 1.0, size=rows), utc=True),
        }
    )
    frame.to_parquet(path, row_group_size=65536)
    return path


def plain(cfg, path: Path, out: Path) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    frame = pd.read_parquet(path)
    repo = FeatureRepo(cfg)
    repo.check_offline()
    joined = repo.join(frame).to_pandas()
    bundle = Registry(cfg).load_bundle(str(Registry(cfg).version("@champion").version))
    names = list(cfg.feature_dtypes())
    pred = bundle.predict(joined[names].astype(object).where(joined[names].notna(), None))
    pd.DataFrame({"customer_id": frame["customer_id"], "prediction": pred}).to_parquet(out)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="batch.batch_size (default: the config's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="raylane-bench-") as tmp, runtime.ray_session():
        root = Path(tmp)
        cfg = example_project(
            root / "project",
            overrides=[
                "train.epochs=2",
                "registry.promotion.floor=null",
                f"batch.concurrency={args.actors}",
                *([f"batch.batch_size={args.batch_size}"] if args.batch_size else []),
            ],
        )
        ingest(cfg)
        FeatureRepo(cfg).apply()
        assert train(cfg).promoted
        small, large = (
            entities(cfg, args.rows // 10, root / "small.parquet"),
            entities(cfg, args.rows, root / "large.parquet"),
        )
        results = {}
        for label, path in (("small", small), ("large", large)):
            with PeakMemory() as memory:
                report = predict(cfg, entities=str(path), out=root / f"scores-{label}")
            results[label] = (report.seconds, memory.peak, memory.peak_pss)
            print(
                f"raylane predict, {label}: {report.rows_out} rows in {report.seconds:.1f}s, peak RSS"
                f" {memory.peak / 2**30:.2f} GiB over {memory.processes} processes, peak PSS"
                f" {memory.peak_pss / 2**30:.2f} GiB"
            )
        with PeakMemory() as memory:  # sampled as raylane's runs are: the same overhead
            plain_seconds = plain(cfg, large, root / "plain.parquet")
        print(f"plain loop, large: {plain_seconds:.1f}s, peak RSS {memory.peak / 2**30:.2f} GiB")
    rows = args.rows
    ours = rows / results["large"][0]
    theirs = rows / plain_seconds
    print(
        f"\nbatch inference benchmark: {rows} entity rows, {args.actors} actors of batches of"
        f" {cfg.batch.batch_size} rows, offline features as of each row"
    )
    print(f"raylane predict: {ours:,.0f} rows/s; plain single-process loop: {theirs:,.0f} rows/s")
    print(f"ratio: {ours / theirs:.2f}  (target >= 1.0)")
    for i, what in ((1, "RSS"), (2, "PSS")):
        growth = results["large"][i] / results["small"][i]
        print(f"peak {what} at {rows} rows / at {rows // 10} rows: {growth:.2f}  (target <= 1.25)")


if __name__ == "__main__":
    main()
