"""Ray job entrypoint: run (or resume) a hyperparameter sweep and gate its best model.

    python jobs/sweep.py configs/churn.yaml --set tune.num_samples=16
    ray job submit --working-dir . -- python jobs/sweep.py configs/churn.yaml
    ray job submit --working-dir . -- python jobs/sweep.py configs/churn.yaml --resume

Inside a Ray job, Ray sets RAY_ADDRESS and raylane joins that cluster.
"""

from __future__ import annotations

import argparse
import sys

from raylane.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--resume", action="store_true", help="Continue the latest interrupted sweep (or --name).")
    parser.add_argument("--name", help="Sweep name.")
    args = parser.parse_args()
    argv = ["sweep", args.config, *(x for o in args.overrides for x in ("--set", o))]
    argv += ["--resume"] if args.resume else []
    argv += ["--name", args.name] if args.name else []
    sys.exit(main(argv))
