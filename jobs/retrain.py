"""Ray job entrypoint: one pass of continuous training (what the monitor submits).

    python jobs/retrain.py configs/churn.yaml --reason "manual"
    ray job submit --working-dir . -- python jobs/retrain.py configs/churn.yaml

Ingests the newest data, adds the labels that came back through /feedback, materializes, trains,
registers, gates and promotes (`raylane retrain --help`). Inside a Ray job, Ray sets RAY_ADDRESS and
raylane joins that cluster.
"""

from __future__ import annotations

import sys

from raylane.cli import main

if __name__ == "__main__":
    sys.exit(main(["retrain", *sys.argv[1:]]))
