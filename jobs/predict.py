"""Ray job entrypoint: batch inference of a registered model over many entities.

    python jobs/predict.py configs/churn.yaml --entities all --out /data/scores/2025-03-01
    raylane job submit configs/churn.yaml predict -- --entities all --out /data/scores/2025-03-01

Arguments after the config are those of `raylane predict` (--entities, --out, --model, --as-of,
--features, --overwrite). Inside a Ray job, Ray sets RAY_ADDRESS and raylane joins that cluster.
"""

from __future__ import annotations

import sys

from raylane.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
