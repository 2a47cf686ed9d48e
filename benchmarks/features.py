"""Feature benchmarks: raylane's feature reads against Feast called directly on the same store.

(a) online lookup of 1 and of 100 entities: raylane `OnlineFeatures.get` vs Feast's
    `get_online_features` (same feature refs, same store), interleaved; target ratio <= 1.1.
(b) training set of >= 1M label rows x 10 features into a Ray Dataset: rows/s, and the ratio to
    Feast's `get_historical_features(...).to_df()` alone on the same label rows; target <= 1.3.
(c) the training set on the embedded default (`duckdb`: Feast's DuckDB store with raylane's
    ASOF join), on Feast's own DuckDB store and on Feast's `file` store, the same label rows side
    by side: rows/s of each, the ratio to `file` (target >= 10), and the frames equal.

Run: `make bench` or `.venv/bin/python benchmarks/features.py [--size large|medium|small]`.
Prints ratios (raylane / Feast); lower is better, 1.0 is parity.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from raylane import runtime
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.testing import example_project


def _p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bench_online(repo: FeatureRepo, keys: list[int], rounds: int) -> None:
    reader = repo.online()
    store = repo.store
    refs = [f"{v.name}:{f}" for v in repo.cfg.features.views for f in repo.cfg.view_features(v)]
    key = repo.cfg.entity.join_key
    print("\n(a) online lookup, p50 over", rounds, "interleaved rounds")
    print(f"{'entities':>9} {'feast ms':>10} {'raylane ms':>11} {'ratio':>7}  target <= 1.10")
    for n in (1, 100):
        batch = keys[:n]
        feast_t: list[float] = []
        ours_t: list[float] = []
        for i in range(rounds + 20):
            t0 = time.perf_counter()
            store.get_online_features(features=refs, entity_rows=[{key: k} for k in batch]).to_dict()
            t1 = time.perf_counter()
            reader.get(batch)
            t2 = time.perf_counter()
            if i >= 20:  # warm-up
                feast_t.append(t1 - t0)
                ours_t.append(t2 - t1)
        f, o = _p50_ms(feast_t), _p50_ms(ours_t)
        print(f"{n:>9} {f:>10.3f} {o:>11.3f} {o / f:>7.3f}")


def bench_training_set(repo: FeatureRepo) -> None:
    labels = repo.labels()
    refs = [f"{v.name}:{f}" for v in repo.cfg.features.views for f in repo.cfg.view_features(v)]
    print(f"\n(b) training set: {len(labels):,} label rows x {len(refs)} features")
    t0 = time.perf_counter()
    feast_df = repo.store.get_historical_features(entity_df=labels, features=refs).to_df()
    feast_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = repo.training_set(labels).materialize()
    ours_s = time.perf_counter() - t0
    rows = ds.count()
    print(f"  Feast get_historical_features().to_df(): {feast_s:8.1f} s  ({len(feast_df):,} rows)")
    print(f"  raylane training_set() -> Ray Dataset:    {ours_s:8.1f} s  ({rows:,} rows, {rows / ours_s:,.0f} rows/s)")
    print(f"  ratio raylane / Feast: {ours_s / feast_s:.3f}  target <= 1.30")
    if len(feast_df) != rows:
        print(f"  note: Feast returned {len(feast_df):,} rows, raylane {rows:,} (Feast drops rows whose entity")
        print("        has feature rows but none inside the ttl; raylane keeps them with nulls)")


class _FeastDuckdbRepo(FeatureRepo):
    """The project on Feast's own DuckDB offline store (raylane's default replaces its join)."""

    def feature_store_yaml(self) -> dict[str, object]:
        return {**super().feature_store_yaml(), "offline_store": {"type": "duckdb"}}


def bench_stores(cfg: object, labels: object, repeat: int) -> None:
    """(c): the same training set on each offline store, the same label rows.

    Each store runs once to warm up (imports, DuckDB's start, file caches; shown as "first"),
    then ``repeat`` times; the ratio is of the medians."""
    import pandas as pd

    from raylane.config import DuckdbOfflineStore, FileOfflineStore

    stores = {
        "asof": (FeatureRepo, DuckdbOfflineStore()),
        "feast-duckdb": (_FeastDuckdbRepo, DuckdbOfflineStore()),
        "file": (FeatureRepo, FileOfflineStore(type="file")),
    }
    frames, first, median = {}, {}, {}
    for name, (kind, store) in stores.items():
        c = cfg.model_copy(deep=True)  # type: ignore[attr-defined]
        c.backends.feast.offline_store = store
        repo = kind(c)
        repo.apply()
        runs = []
        for _ in range(repeat + 1):
            t0 = time.perf_counter()
            frames[name] = repo.training_set(labels).to_pandas()
            runs.append(time.perf_counter() - t0)
        first[name], median[name] = runs[0], statistics.median(runs[1:])
    n = len(frames["asof"])
    print(f"\n(c) training set by offline store, {n:,} label rows (first run, then the median of {repeat})")
    print(f"  {'store':>13} {'first s':>8} {'median s':>9} {'rows/s':>12}")
    for name in stores:
        print(f"  {name:>13} {first[name]:8.2f} {median[name]:9.2f} {n / median[name]:>12,.0f}")
    print("  asof = the embedded default `duckdb`: Feast's DuckDB store with raylane's ASOF join")
    print(f"  ratio asof / file rows/s: {median['file'] / median['asof']:.1f}x  target >= 10")
    print(f"  ratio asof / feast-duckdb rows/s: {median['feast-duckdb'] / median['asof']:.1f}x")
    for name in stores:
        pd.testing.assert_frame_equal(frames[name], frames["file"])
    print("  the three frames are equal (rows, order, values, dtypes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="large", help="example data size (large = 1M label rows)")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per offline store in (c)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="raylane-bench-") as tmp:
        t0 = time.perf_counter()
        cfg = example_project(Path(tmp), size=args.size)
        print(f"generated {args.size} data in {time.perf_counter() - t0:.1f} s")
        with runtime.ray_session(cfg.backends.ray):
            t0 = time.perf_counter()
            reports = ingest(cfg)
            print(f"ingested {sum(r.rows for r in reports):,} rows in {time.perf_counter() - t0:.1f} s")
            repo = FeatureRepo(cfg)
            repo.apply()
            t0 = time.perf_counter()
            repo.materialize()
            print(f"materialized in {time.perf_counter() - t0:.1f} s")
            keys = repo.labels()[cfg.entity.join_key].drop_duplicates().tolist()
            bench_online(repo, keys, args.rounds)
            bench_training_set(repo)
            bench_stores(cfg, repo.labels(), args.repeat)


if __name__ == "__main__":
    main()
