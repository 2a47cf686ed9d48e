"""A project job of the churn example: the label balance per day, from the offline tables, as JSON.

Declared in configs/churn.yaml under `jobs.label_report`; run it on the cluster with

    raylane job submit configs/churn.yaml label_report --wait

raylane runs it as `python label_report.py raylane-config.json --out …` (the config resolved on
the submitting machine); a relative --out lands under the project's storage root.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as pads

from raylane.config import load_config
from raylane.ingest import offline_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, default=Path("reports/label_balance.json"))
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    labels = cfg.data.labels
    when = cfg.data.source(labels.source).timestamp_column
    table = pads.dataset(str(offline_path(cfg, labels.source)), format="parquet").to_table(
        columns=[when, labels.column]
    )
    frame = table.to_pandas()
    frame["day"] = frame[when].dt.strftime("%Y-%m-%d")
    daily = frame.groupby("day")[labels.column].agg(["count", "mean"])
    report = {
        "project": cfg.project,
        "rows": int(table.num_rows),
        "positive_rate": float(pc.mean(table[labels.column]).as_py()),
        "days": {day: {"rows": int(r["count"]), "positive_rate": float(r["mean"])} for day, r in daily.iterrows()},
    }
    out = args.out if args.out.is_absolute() else cfg.storage_root / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"label_report: {report['rows']} labels over {len(daily)} days -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
