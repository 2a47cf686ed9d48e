"""Lineage: what a model was made from (code, config, data, job), recorded as MLflow tags.

`Lineage` is the one definition of those tag names: a registered model version carries them bare
(``git_sha``, ``data_hash``, …; `Lineage.to_tags()`), a training run carries them under the
``raylane.`` prefix (`Lineage.to_tags(RUN_PREFIX)`). `Tag` names raylane's other run tags.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["RUN_PREFIX", "Lineage", "Tag", "code_version", "data_fingerprint", "project_version", "ray_ids"]

RUN_PREFIX = "raylane."


class Tag:
    """raylane's MLflow run tags other than lineage (one place for their names)."""

    KIND = "raylane.kind"  # sweep | trial | pipeline step kinds
    STATUS = "raylane.status"
    TRIGGER = "raylane.trigger"
    REPRODUCES = "raylane.reproduces"
    SWEEP = "raylane.sweep"
    TRIAL_ID = "raylane.trial_id"
    OUTCOME = "raylane.outcome"
    EPOCHS = "raylane.epochs"
    PBT_STARTED_FROM = "raylane.pbt.started_from"  # the checkpoint PBT last started a trial from
    BEST_TRIAL = "raylane.best_trial"
    BEST_RUN_ID = "raylane.best_run_id"
    REGISTERED_VERSION = "raylane.registered_version"
    PIPELINE = "raylane.pipeline"
    PIPELINE_RUN = "raylane.pipeline_run"
    STEPS = "raylane.steps"
    # Ray job metadata (not MLflow): which project and entrypoint a submitted job belongs to.
    JOB_PROJECT = "raylane.project"
    JOB_ENTRYPOINT = "raylane.entrypoint"


@dataclass(frozen=True)
class Lineage:
    """What one model was made from. Every field is a string, as MLflow tags are; '' when unknown."""

    git_sha: str = ""  # the project's commit: the repository that holds the config and the model code
    git_dirty: str = ""
    raylane_version: str = ""
    model_code_hash: str = ""  # sha256 of the model's logged source ('' for the built-in MLP)
    train_loop_hash: str = ""  # sha256 of train.loop's logged source ('' for raylane's epoch loop)
    config_hash: str = ""
    data_views: str = ""
    data_rows: str = ""
    data_label_time_min: str = ""
    data_label_time_max: str = ""
    data_hash: str = ""
    ray_job_id: str = ""
    ray_submission_id: str = ""
    project: str = ""
    parent_version: str = ""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_tags(self, prefix: str = "") -> dict[str, str]:
        """The non-empty fields as tags (``prefix`` + name); `from_tags` reads them back."""
        return {f"{prefix}{k}": v for k, v in dataclasses.asdict(self).items() if v != ""}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str], prefix: str = "") -> Lineage:
        """The lineage in a tag mapping (a model version's, or a run's with ``prefix``); other tags are ignored."""
        return cls(**{k: str(tags[f"{prefix}{k}"]) for k in cls.names() if f"{prefix}{k}" in tags})

    def replace(self, **changes: str) -> Lineage:
        return dataclasses.replace(self, **changes)


def project_version(cfg: Any) -> dict[str, str]:
    """The project's git commit and dirty flag (the repository of the config's folder, else of the
    current folder) and raylane's version."""
    from raylane._version import __version__

    return {**code_version(cfg.base_dir or Path.cwd()), "raylane_version": __version__}


def code_version(where: Path | None = None) -> dict[str, str]:
    """The git commit of the code at ``where`` and whether the work tree had uncommitted changes."""
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
