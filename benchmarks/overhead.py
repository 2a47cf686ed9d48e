"""Fixed cost of small work: each CLI stage's wall time as a ratio to a bare Ray start/stop.

The machines this runs on vary several-fold from day to day, so every figure is a ratio to
``python -c "import ray; ray.init(); ray.shutdown()"`` measured in the same run (median of 3).
Each stage is the command a user types, run as a fresh process (imports and Ray start included):
`features ingest`, `features apply`, `features materialize`, `train` (3 epochs by default).
`train`'s own stage table (Ray start, training set, worker-group start, epochs, …) is printed
beside it, so the epochs' own time is seen apart from the fixed cost.

Targets (issue 15, tiny example): ingest, apply, materialize <= 2x; train (3 epochs) <= 4x.

Run: `.venv/bin/python benchmarks/overhead.py [--size tiny|small|medium ...] [--epochs 3]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from raylane.examples import churn
from raylane.testing import example_config_path

TARGETS = {"features ingest": 2.0, "features apply": 2.0, "features materialize": 2.0, "train": 4.0}
BIN = Path(sys.executable).parent


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout + done.stderr


def bare_ray(env: dict[str, str], runs: int = 3) -> float:
    code = "import ray; ray.init(include_dashboard=False); ray.shutdown()"
    return statistics.median(_timed([sys.executable, "-c", code], env)[0] for _ in range(runs))


def run_size(size: str, epochs: int, bare: float, env: dict[str, str]) -> None:
    config = str(example_config_path())
    with tempfile.TemporaryDirectory(prefix="raylane-overhead-") as tmp:
        data = Path(tmp) / "data"
        churn.write(churn.SIZES[size], data)
        env = {**env, "CHURN_DATA": str(data), "RAYLANE_STORAGE": str(Path(tmp) / "store")}
        stages = [
            ("features ingest", ["features", "ingest", config]),
            ("features apply", ["features", "apply", config]),
            ("features materialize", ["features", "materialize", config]),
            ("train", ["train", config, "--set", f"train.epochs={epochs}", "--set", "registry.promotion.floor=null"]),
        ]
        print(f"\n{size} example ({churn.SIZES[size].labels:,} label rows); bare Ray start/stop {bare:.1f} s")
        print(f"{'stage':<22} {'seconds':>8} {'x bare Ray':>11} {'target':>7}")
        train_out = ""
        for name, args in stages:
            seconds, output = _timed([str(BIN / "raylane"), *args], env)
            if name == "train":
                train_out = output
            ok = "ok" if seconds / bare <= TARGETS[name] else "MISSED"
            print(f"{name:<22} {seconds:>8.1f} {seconds / bare:>11.2f} {TARGETS[name]:>6.0f}x  {ok}")
        table = [ln for ln in train_out.splitlines() if "│" in ln or "┃" in ln or "time" in ln.lower()]
        if table:
            print("train's own stage table:")
            print("\n".join(table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", nargs="+", default=["tiny"], choices=sorted(churn.SIZES))
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAYLANE_", "RAY_ADDRESS"))}
    bare = bare_ray(env)
    for size in args.size:
        run_size(size, args.epochs, bare, env)


if __name__ == "__main__":
    main()
