"""Lineage: what a model was made from (code, config, data, job), recorded as MLflow tags."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["code_version", "data_fingerprint", "ray_ids"]


def code_version(where: Path | None = None) -> dict[str, str]:
    """The git commit of the code and whether the work tree had uncommitted changes."""
    cwd = str(where or Path(__file__).resolve().parent)

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return {"git_sha": "unknown", "git_dirty": "unknown"}
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha, "git_dirty": "true" if dirty else "false"}


def frame_hash(frame: pd.DataFrame) -> int:
    """An order-independent hash of a frame's rows (sum of row hashes mod 2**64): blocks combine."""
    if frame.empty:
        return 0
    return int(pd.util.hash_pandas_object(frame, index=False).to_numpy().sum(dtype="uint64"))


def data_fingerprint(ds: Any, *, label_time: str, views: list[str]) -> dict[str, str]:
    """Views, label time range, row count and a hash of the training-set snapshot (a Ray Dataset)."""

    def block(frame: pd.DataFrame) -> pd.DataFrame:
        times = pd.to_datetime(frame[label_time], utc=True)
        return pd.DataFrame(
            {"rows": [len(frame)], "hash": [str(frame_hash(frame))], "min": [times.min()], "max": [times.max()]}
        )

    parts = pd.DataFrame(ds.map_batches(block, batch_format="pandas").take_all())
    total = sum(int(h) for h in parts["hash"]) % (1 << 64)
    rows = int(parts["rows"].sum())
    digest = hashlib.sha256(f"{total}:{rows}:{','.join(views)}".encode()).hexdigest()[:16]
    return {
        "data_views": ",".join(views),
        "data_rows": str(rows),
        "data_label_time_min": str(parts["min"].min()),
        "data_label_time_max": str(parts["max"].max()),
        "data_hash": digest,
    }


def ray_ids() -> dict[str, str]:
    """The Ray job this runs in (and its submission id when submitted through the job API)."""
    import ray

    out = {"ray_job_id": ray.get_runtime_context().get_job_id()}
    if sub := os.environ.get("RAY_JOB_SUBMISSION_ID"):
        out["ray_submission_id"] = sub
    return out
