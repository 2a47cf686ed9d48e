"""Ray job entrypoint: the whole loop, ingest → features → train (or sweep) → deploy → monitor.

    python jobs/pipeline.py configs/churn.yaml --until train
    raylane job submit configs/churn.yaml pipeline -- --sweep

Arguments after the config are those of `raylane run` (--from, --until, --sweep, --force, --set).
Steps whose inputs are unchanged since their last success are skipped. Inside a Ray job, Ray sets
RAY_ADDRESS and raylane joins that cluster; the deployment stays on it after the job ends.
"""

from __future__ import annotations

import sys

from raylane.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
