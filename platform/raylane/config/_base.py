"""Field types every section shares: project paths, durations, column types, the strict base model."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationInfo,
)

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
PROJECT_NAME = r"^[a-z][a-z0-9_]*$"


# --------------------------------------------------------------------------- field types


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    value = value.expanduser()
    base = (info.context or {}).get("base_dir")
    if not value.is_absolute() and base is not None:
        value = Path(base) / value
    return Path(os.path.normpath(value)) if value.is_absolute() else value


ProjectPath = Annotated[Path, AfterValidator(_resolve_path)]
"""A path; relative ones resolve against the folder of the config file."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_duration(value: Any) -> Any:
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]
"""A duration: ``30d``, ``12h``, ``15m``, ``45s``, ``250ms``, seconds as a number, or ISO 8601."""

ColumnType = Literal["int64", "float64", "string", "bool", "timestamp"]

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "log_loss", "accuracy"),
    "multiclass": ("macro_f1", "accuracy", "log_loss"),
    "regression": ("rmse", "mae"),
}
"""Holdout metrics per task; the first is the default for early stopping and the gate."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)
