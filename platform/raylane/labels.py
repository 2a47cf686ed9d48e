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

__all__ = ["REGRESSION_MAX", "invalid_labels", "label_rule"]

REGRESSION_MAX = 3.4028234663852886e38  # float32's largest finite value


def label_rule(task: str) -> str:
    """The rule, in words, for error messages."""
    if task == "binary":
        return "a binary label is 0 or 1"
    if task == "regression":
        return f"a regression label is a finite number within ±{REGRESSION_MAX:.3g}"
    return "a multiclass label is any value (one of the model's classes for /feedback)"


def invalid_labels(task: str, values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """A boolean mask: True where a (non-null) value breaks the task's rule."""
    arr = np.asarray(values, dtype=object)
    present = np.array([v is not None for v in arr], dtype=bool)
    if task == "multiclass" or not present.any():
        return np.zeros(len(arr), dtype=bool)
    bad = np.zeros(len(arr), dtype=bool)
    for i in np.flatnonzero(present):
        bad[i] = not _ok(task, arr[i])
    return bad


def _ok(task: str, value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return task == "binary"
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return False
    if task == "binary":
        return number in (0.0, 1.0)
    return bool(np.isfinite(number)) and abs(number) <= REGRESSION_MAX
