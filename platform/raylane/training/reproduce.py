"""Reproduction: retrain a registered version from the exact config it recorded, and compare.

`recorded_config` reads back the resolved config a version's MLflow run logged
(``config/project.json``); `reproduce` retrains from it without registering and returns a
`Reproduction`: both runs' holdout metrics and lineage, so ``raylane train --reproduce`` can say
whether the metrics match within `REPRODUCE_TOLERANCE` and whether the data or the code changed.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raylane.config import ProjectConfig
from raylane.lineage import RUN_PREFIX, Lineage, Tag
from raylane.registry import Registry
from raylane.training.trainer import train

__all__ = ["REPRODUCE_TOLERANCE", "Reproduction", "recorded_config", "reproduce"]

REPRODUCE_TOLERANCE = 0.01
"""Largest absolute difference of a holdout metric for a retrained model to count as reproduced."""


@dataclass
class Reproduction:
    """A retraining from a registered version's recorded config, compared with the record."""

    ref: str
    recorded: dict[str, float]
    retrained: dict[str, float]
    lineage_then: Lineage
    lineage_now: Lineage

    @property
    def same_data(self) -> bool:
        return self.lineage_then.data_hash == self.lineage_now.data_hash

    @property
    def same_code(self) -> bool:
        """The same project commit; the model code is the version's own logged copy either way."""
        return self.lineage_then.git_sha == self.lineage_now.git_sha

    @property
    def matches(self) -> bool:
        return all(
            abs(self.recorded[k] - self.retrained.get(k, float("nan"))) <= REPRODUCE_TOLERANCE for k in self.recorded
        )


def recorded_config(cfg: ProjectConfig, ref: str) -> tuple[ProjectConfig, Any, Any]:
    """The exact config a registered version was trained with, its version and its MLflow run."""
    reg = Registry(cfg)
    mv = reg.version(ref)
    run = reg.client.get_run(mv.run_id)
    with tempfile.TemporaryDirectory(prefix="raylane-config-") as tmp:
        local = reg.client.download_artifacts(mv.run_id, "config/project.json", tmp)
        doc = json.loads(Path(local).read_text())
    return ProjectConfig.model_validate(doc), mv, run


def reproduce(cfg: ProjectConfig, ref: str, *, step: Callable[[str], object] = lambda _: None) -> Reproduction:
    """Retrain ``ref`` from its recorded config and its logged model code (same seed, same data
    window) without registering."""
    then_cfg, mv, run = recorded_config(cfg, ref)
    recorded = {k.removeprefix("holdout_"): v for k, v in run.data.metrics.items() if k.startswith("holdout_")}
    then = Lineage.from_tags(run.data.tags, RUN_PREFIX)
    logged = Registry(cfg).load_bundle(str(mv.version))  # the logged model and loop code, not the working tree's
    result = train(
        then_cfg.with_base_dir(cfg.base_dir),
        register=False,
        step=step,
        code=logged.code,
        loop=logged.loop,
        extra_tags={Tag.REPRODUCES: f"{mv.name}/{mv.version}"},
    )
    return Reproduction(f"{mv.name}/{mv.version}", recorded, result.metrics, then, result.lineage)
