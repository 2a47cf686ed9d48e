"""Ray job entrypoint: train, track, register and gate one model.

    python jobs/train.py configs/churn.yaml --set train.epochs=3
    ray job submit --working-dir . -- python jobs/train.py configs/churn.yaml

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
    args = parser.parse_args()
    sys.exit(main(["train", args.config, *(x for o in args.overrides for x in ("--set", o))]))
