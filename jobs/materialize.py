"""Ray job entrypoint: load feature rows from the offline tables into the online store.

    python jobs/materialize.py configs/churn.yaml --incremental
    raylane job submit configs/churn.yaml materialize -- --incremental

Arguments after the config are those of `raylane features materialize` (--start, --end,
--incremental, --view). Inside a Ray job, Ray sets RAY_ADDRESS and raylane joins that cluster.
"""

from __future__ import annotations

import sys

from raylane.cli import main

if __name__ == "__main__":
    sys.exit(main(["features", "materialize", *sys.argv[1:]]))
