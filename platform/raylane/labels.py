"""What a valid label is, per task: one rule for ingestion, ``/feedback`` and retraining.

- ``binary``: 0 or 1 (``true``/``false`` for a bool column);
- ``regression``: a finite number within float32's range (the model trains in float32);
- ``multiclass``: any value; ``/feedback`` takes only the serving model's classes.

NaN is not null: it breaks the rule of a binary or regression label. A null label is not judged
here: ingestion counts nulls against the column's ``max_null_fraction`` and ``/feedback`` requires
a label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FLOAT32_MAX", "invalid_labels", "label_rule"]

FLOAT32_MAX = float(np.finfo(np.float32).max)  # the model computes in float32


def label_rule(task: str) -> str:
    """The rule, in words, for error messages."""
    if task == "binary":
        return "a binary label is 0 or 1"
    if task == "regression":
        return f"a regression label is a finite number within ±{FLOAT32_MAX:.3g}"
    return "a multiclass label is any value (one of the model's classes for /feedback)"


def invalid_labels(task: str, values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """A boolean mask: True where a (non-null) value breaks the task's rule."""
    if task == "multiclass":
        return np.zeros(len(values), dtype=bool)
    return np.array([v is not None and not _ok(task, v) for v in values], dtype=bool)


def _ok(task: str, value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return task == "binary"
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return False
    if task == "binary":
        return number in (0.0, 1.0)
    return bool(np.isfinite(number)) and abs(number) <= FLOAT32_MAX
