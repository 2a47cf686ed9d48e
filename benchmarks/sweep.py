"""Sweep benchmark: what the search algorithm and the scheduler buy, on the same trial budget.

Two parts, each on one generated project (the training set is built once; every sweep is its own
MLflow experiment and registers nothing):

- ``--part search`` (default; issue 18): random search + ASHA against Optuna's TPE + ASHA, same
  space, same number of trials, same ASHA rungs, for each of ``--seeds`` searcher seeds. Reports
  per seed: best validation metric (the holdout: the split every trial validates on), trial-epochs
  used, and trial-epochs until the sweep first reached random search's best (from every trial's
  per-epoch MLflow history, in the order the epochs finished). Targets: Optuna's best >= random's
  on average; trial-epochs to reach random's best <= 0.6x random's. ``--space wide`` (default)
  searches `WIDE_SPACE`, the space a team writes before it knows where the good region is
  (learning rate and weight decay over five decades, dropout up to 0.8); ``--space config`` the
  example config's own `tune.space`, good almost everywhere on the example (both searchers'
  best within 0.0002 of each other on 3 seeds: little for a searcher to find).
- ``--part scheduler``: ASHA against random search without early stopping (FIFO), same sampled
  configurations: best metric ratio (target >= 0.99), trial-epochs (target <= 0.50) and sweep
  overhead, trials wall / (sum of trial times / concurrency) (target <= 1.3).

Run: `.venv/bin/python benchmarks/sweep.py [--part search|scheduler] [--space wide|config]
[--size medium] [--samples 16] [--seeds 3] [--max-t 6] [--reduction-factor 3]`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from raylane import runtime
from raylane.config import ProjectConfig
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.sweep import SweepResult, sweep
from raylane.testing import example_project

WIDE_SPACE: dict[str, Any] = {
    "train.learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1.0},
    "train.weight_decay": {"type": "loguniform", "low": 1e-5, "high": 1.0},
    "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.8},
    "model.hidden_layers": {"type": "choice", "values": [[16], [32], [64, 32], [128, 64]]},
}


def project(root: Path, size: str, max_t: int, reduction: float, concurrency: int | None) -> ProjectConfig:
    overrides = [
        f"tune.scheduler.max_t={max_t}",
        "tune.scheduler.grace_period=1",
        f"tune.scheduler.reduction_factor={reduction}",
        "train.early_stopping=null",  # only the scheduler stops trials early here
    ]
    if concurrency:
        overrides.append(f"tune.max_concurrent_trials={concurrency}")
    cfg = example_project(root, size=size, overrides=overrides)
    ingest(cfg)
    FeatureRepo(cfg).apply()
    return cfg


def variant(cfg: ProjectConfig, name: str, **tune: Any) -> ProjectConfig:
    """``cfg`` with ``tune`` fields changed (``search``/``scheduler`` merged, ``space`` replaced),
    its own experiment."""
    doc = cfg.model_dump(mode="json")
    for key, value in tune.items():
        merge = isinstance(value, dict) and key != "space"
        doc["tune"][key] = {**doc["tune"][key], **value} if merge else value
    doc["backends"]["mlflow"]["experiment"] = f"bench-{name}"
    return ProjectConfig.model_validate(doc).with_base_dir(cfg.base_dir)


def run(cfg: ProjectConfig, name: str) -> SweepResult:
    started = time.perf_counter()
    result = sweep(cfg, name=name, register=False)
    seconds = time.perf_counter() - started
    print(f"{name}: best {result.best.best:.4f}, {result.trial_epochs} trial-epochs, {seconds:.0f}s", flush=True)
    return result


def epochs_to_reach(cfg: ProjectConfig, result: SweepResult, target: float, mode: str) -> float:
    """Trial-epochs the sweep had trained when an epoch first scored ``target`` or better (inf if
    never): every trial's per-epoch MLflow history, merged in the order the epochs finished."""
    from mlflow import MlflowClient

    client = MlflowClient(cfg.mlflow_tracking_uri)
    events = sorted(
        (m.timestamp, m.value)
        for t in result.trials
        if t.run_id is not None
        for m in client.get_metric_history(t.run_id, f"val_{result.metric}")
    )
    for used, (_, value) in enumerate(events, start=1):
        if (value >= target - 1e-12) if mode == "max" else (value <= target + 1e-12):
            return float(used)
    return math.inf


def search_part(cfg: ProjectConfig, samples: int, seeds: int, space: str) -> None:
    rows = []
    dims = WIDE_SPACE if space == "wide" else cfg.model_dump(mode="json")["tune"]["space"]
    for seed in range(seeds):
        got = {}
        for kind in ("random", "optuna"):
            sweep_cfg = variant(
                cfg, f"{kind}-{seed}", num_samples=samples, search={"type": kind, "seed": seed}, space=dims
            )
            got[kind] = (sweep_cfg, run(sweep_cfg, f"{kind}-{seed}"))
        (rand_cfg, rand), (opt_cfg, opt) = got["random"], got["optuna"]
        target = float(rand.best.best or 0.0)
        rows.append(
            {
                "seed": seed,
                "random": target,
                "optuna": float(opt.best.best or 0.0),
                "random_epochs": rand.trial_epochs,
                "optuna_epochs": opt.trial_epochs,
                "random_reach": epochs_to_reach(rand_cfg, rand, target, rand.mode),
                "optuna_reach": epochs_to_reach(opt_cfg, opt, target, opt.mode),
            }
        )
    metric = f"best val_{rand.metric}"
    print(f"\nsearch benchmark: {samples} trials per sweep, ASHA (max_t {cfg.tune.scheduler.max_t}, grace 1,")
    print(f"reduction factor {cfg.tune.scheduler.reduction_factor:g}), {seeds} seeds, one run; space {space}:")
    for name, dim in dims.items():
        print(f"  {name}: {dim}")
    header = f"{'seed':>4s}{metric + ' random':>26s}{'optuna':>9s}{'trial-epochs random':>21s}{'optuna':>8s}"
    print(header + f"{'epochs to random best: random':>31s}{'optuna':>8s}{'ratio':>7s}")
    ratios = []
    for r in rows:
        ratio = r["optuna_reach"] / r["random_reach"]
        ratios.append(ratio)
        print(
            f"{r['seed']:>4d}{r['random']:>26.4f}{r['optuna']:>9.4f}{r['random_epochs']:>21d}{r['optuna_epochs']:>8d}"
            f"{r['random_reach']:>31.0f}{r['optuna_reach']:>8.0f}{ratio:>7.2f}"
        )
    mean_rand, mean_opt = statistics.mean(r["random"] for r in rows), statistics.mean(r["optuna"] for r in rows)
    print(f"\nmean best: optuna {mean_opt:.4f} vs random {mean_rand:.4f}  (target: optuna >= random)")
    print(f"trial-epochs to reach random's best, optuna / random: mean {statistics.mean(ratios):.2f}  (target <= 0.6)")


def scheduler_part(cfg: ProjectConfig, samples: int) -> None:
    rand = run(variant(cfg, "fifo", num_samples=samples, scheduler={"type": "fifo"}), "fifo")
    asha = run(variant(cfg, "asha", num_samples=samples, scheduler={"type": "asha"}), "asha")
    print(f"\nscheduler benchmark: {samples} trials, max_t {cfg.tune.scheduler.max_t}, grace 1")
    print(f"{'':28s}{'random (fifo)':>16s}{'asha':>12s}")
    print(f"{'best val_' + rand.metric:28s}{rand.best.best:16.4f}{asha.best.best:12.4f}")
    print(f"{'trial-epochs':28s}{rand.trial_epochs:16d}{asha.trial_epochs:12d}")
    print(f"{'stopped early':28s}{rand.count('stopped_early'):16d}{asha.count('stopped_early'):12d}")
    print(f"{'trials phase wall (s)':28s}{rand.tune_seconds:16.1f}{asha.tune_seconds:12.1f}")
    print(f"{'sum of trial times (s)':28s}{rand.trial_seconds:16.1f}{asha.trial_seconds:12.1f}")
    print(f"{'concurrency':28s}{rand.concurrency:16d}{asha.concurrency:12d}")
    print(f"\nASHA best / random best: {(asha.best.best or 0) / (rand.best.best or 1):.4f}  (target >= 0.99)")
    print(f"ASHA trial-epochs / random: {asha.trial_epochs / rand.trial_epochs:.2f}  (target <= 0.50)")
    for label, r in (("random", rand), ("asha", asha)):
        overhead = r.tune_seconds / (r.trial_seconds / r.concurrency)
        print(f"{label} sweep overhead (trials wall / (sum of trial times / concurrency)): {overhead:.2f} (<= 1.3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["search", "scheduler"], default="search")
    parser.add_argument("--space", choices=["wide", "config"], default="wide", help="The search space (--part search).")
    parser.add_argument("--size", default="medium")
    parser.add_argument("--samples", type=int, default=16, help="Trials in each sweep.")
    parser.add_argument("--seeds", type=int, default=3, help="Searcher seeds (--part search).")
    parser.add_argument("--reduction-factor", type=float, default=3.0, help="ASHA's halving rate.")
    parser.add_argument("--max-t", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=None, help="Trials at once (default: sized to the CPUs).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="raylane-bench-") as tmp, runtime.ray_session():
        cfg = project(Path(tmp), args.size, args.max_t, args.reduction_factor, args.concurrency)
        if args.part == "search":
            search_part(cfg, args.samples, args.seeds, args.space)
        else:
            scheduler_part(cfg, args.samples)


if __name__ == "__main__":
    main()
