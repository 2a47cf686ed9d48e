"""One label rule per task, for ingestion, /feedback and retraining alike."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raylane.labels import invalid_labels, label_rule


@pytest.mark.parametrize(
    ("task", "values", "bad"),
    [
        ("binary", [0, 1, 1, 0], []),
        ("binary", [True, False], []),
        ("binary", [0.0, 1.0, np.int64(1)], []),
        ("binary", [0, 1, 999, 0, -7, 2, 0.5], [2, 4, 5, 6]),
        ("binary", [0, None, 1, math.nan], [3]),  # null is not judged here; NaN is not null
        ("binary", ["yes", "1"], [0]),
        ("regression", [1.5, -3, 0, 3e38], []),
        ("regression", [math.inf, -math.inf, math.nan, 1e39, True, None], [0, 1, 2, 3, 4]),
        ("multiclass", ["a", 7, None, math.nan], []),
    ],
)
def test_each_task_has_one_rule(task: str, values: list[object], bad: list[int]) -> None:
    assert np.flatnonzero(invalid_labels(task, values)).tolist() == bad


def test_the_rule_in_words_names_the_values() -> None:
    assert "0 or 1" in label_rule("binary") and "finite" in label_rule("regression")
    assert invalid_labels("binary", []).shape == (0,)
