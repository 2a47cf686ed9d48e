"""Sweep benchmark: ASHA early stopping against random search without it, on the same trial budget.

Both sweeps sample the same configurations (same space, same seed) on the example project; the
random search runs every trial to ``max_t`` epochs (FIFO), ASHA stops weak trials early. Reports:

- best validation metric of each and their ratio (target: ASHA within 1 % of random search);
- trial-epochs used, ASHA over random search (target <= 50 %);
- sweep overhead: the trials phase's wall time over (sum of trial times / concurrency)
  (target <= 1.3); the whole command (training set, preprocessing, registration) reported apart.

Run: `.venv/bin/python benchmarks/sweep.py [--size small] [--samples 16] [--max-t 6] [--reduction-factor 3]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from raylane import runtime
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.sweep import SweepResult, sweep
from raylane.testing import example_project


def run(
    root: Path, size: str, samples: int, max_t: int, reduction: float, scheduler: str, concurrency: int | None
) -> SweepResult:
    overrides = [
        f"tune.num_samples={samples}",
        f"tune.scheduler.type={scheduler}",
        f"tune.scheduler.max_t={max_t}",
        "tune.scheduler.grace_period=1",
        f"tune.scheduler.reduction_factor={reduction}",
        "train.early_stopping=null",  # only the scheduler stops trials early here
        f"registry.model_name=bench_{scheduler}",
        f"backends.mlflow.experiment=bench-{scheduler}",
    ]
    if concurrency:
        overrides.append(f"tune.max_concurrent_trials={concurrency}")
    cfg = example_project(root, size=size, overrides=overrides)
    ingest(cfg)
    FeatureRepo(cfg).apply()
    return sweep(cfg, name=f"bench-{scheduler}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument(
        "--samples",
        type=int,
        default=16,
        help="Trials in each sweep. Async ASHA lets the first trials at a rung through (nothing to compare with"
        " yet); 16 amortizes that where 12 did not (trial-epochs 0.50 vs 0.54 of random search here).",
    )
    parser.add_argument("--reduction-factor", type=float, default=3.0, help="ASHA's halving rate.")
    parser.add_argument("--max-t", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=None, help="Trials at once (default: sized to the CPUs).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="raylane-bench-") as tmp, runtime.ray_session():
        results = {}
        for scheduler in ("fifo", "asha"):
            started = time.perf_counter()
            results[scheduler] = run(
                Path(tmp) / scheduler,
                args.size,
                args.samples,
                args.max_t,
                args.reduction_factor,
                scheduler,
                args.concurrency,
            )
            print(f"{scheduler}: {time.perf_counter() - started:.0f}s", flush=True)
    rand, asha = results["fifo"], results["asha"]
    print(
        f"\nsweep benchmark: {args.samples} trials, max_t {args.max_t}, grace 1, reduction factor"
        f" {args.reduction_factor:g}, size {args.size}"
    )
    print(f"{'':28s}{'random (fifo)':>16s}{'asha':>12s}")
    print(f"{'best val_' + rand.metric:28s}{rand.best.best:16.4f}{asha.best.best:12.4f}")
    print(
        f"{'holdout ' + rand.metric:28s}{rand.train.metrics[rand.metric]:16.4f}{asha.train.metrics[asha.metric]:12.4f}"
    )
    print(f"{'trial-epochs':28s}{rand.trial_epochs:16d}{asha.trial_epochs:12d}")
    print(f"{'stopped early':28s}{rand.count('stopped_early'):16d}{asha.count('stopped_early'):12d}")
    print(f"{'trials phase wall (s)':28s}{rand.tune_seconds:16.1f}{asha.tune_seconds:12.1f}")
    print(f"{'sum of trial times (s)':28s}{rand.trial_seconds:16.1f}{asha.trial_seconds:12.1f}")
    print(f"{'concurrency':28s}{rand.concurrency:16d}{asha.concurrency:12d}")
    print(f"{'whole sweep wall (s)':28s}{rand.seconds:16.1f}{asha.seconds:12.1f}")
    quality = asha.best.best / rand.best.best
    budget = asha.trial_epochs / rand.trial_epochs
    print(f"\nASHA best / random best: {quality:.4f}  (target >= 0.99)")
    print(f"ASHA trial-epochs / random: {budget:.2f}  (target <= 0.50)")
    for label, r in (("random", rand), ("asha", asha)):
        overhead = r.tune_seconds / (r.trial_seconds / r.concurrency)
        print(
            f"{label} sweep overhead (trials wall / (sum of trial times / concurrency)): {overhead:.2f} (target <= 1.3)"
        )


if __name__ == "__main__":
    main()
