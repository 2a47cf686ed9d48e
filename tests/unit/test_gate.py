"""The promotion gate's decision from the numbers alone (`raylane.registry.decide`): no MLflow, no data."""

from __future__ import annotations

import math

import pytest

from raylane.registry import decide


def _decide(challenger: float, champion: float | None, *, mode: str = "max", floor: float | None = None,
            margin: float = 0.0):  # fmt: skip
    return decide(
        "7",
        "roc_auc" if mode == "max" else "rmse",
        mode,
        challenger,
        champion=champion,
        champion_version=None if champion is None else "6",
        floor=floor,
        margin=margin,
        holdout_rows=1234,
    )


def test_first_model_passes_without_a_floor() -> None:
    d = _decide(0.61, None)
    assert d.passed and d.champion is None and d.champion_version is None
    assert d.reason == "first model; roc_auc 0.6100"


@pytest.mark.parametrize(("value", "passed"), [(0.70, True), (0.75, True), (0.69, False)])
def test_first_model_must_clear_the_floor(value: float, passed: bool) -> None:
    d = _decide(value, None, floor=0.70)
    assert d.passed is passed
    assert ("clears the floor 0.7" in d.reason) is passed
    assert ("misses the floor 0.7" in d.reason) is not passed


def test_lower_is_better_for_min_metrics() -> None:
    assert _decide(0.9, None, mode="min", floor=1.0).passed
    assert not _decide(1.1, None, mode="min", floor=1.0).passed
    assert _decide(0.9, 1.0, mode="min", margin=0.05).passed
    assert not _decide(0.97, 1.0, mode="min", margin=0.05).passed


def test_challenger_must_beat_the_champion_by_the_margin() -> None:
    win = _decide(0.82, 0.80, margin=0.01)
    assert win.passed and win.champion == 0.80 and win.champion_version == "6"
    assert win.reason == (
        "roc_auc 0.8200 beats champion v6's 0.8000 by the margin 0.01 on the same holdout (1,234 rows)"
    )
    lose = _decide(0.805, 0.80, margin=0.01)
    assert not lose.passed and "does not beat champion v6's 0.8000" in lose.reason


def test_a_tie_passes_only_with_a_zero_margin() -> None:
    tie = _decide(0.80, 0.80, margin=0.0)
    assert tie.passed and tie.reason.startswith("roc_auc 0.8000 ties champion v6's 0.8000 (with the margin 0")
    assert not _decide(0.80, 0.80, margin=0.001).passed


def test_a_nan_metric_never_passes() -> None:
    assert not _decide(math.nan, 0.80).passed
    assert not _decide(math.nan, None).passed
    assert not _decide(math.nan, None, floor=0.5).passed
