"""The stage stopwatch behind `raylane train`'s timing table and its ``time_<stage>_s`` metrics."""

from __future__ import annotations

import pytest

from raylane.timing import Stopwatch


def test_stages_add_up_in_the_order_they_ran() -> None:
    timer = Stopwatch()
    timer.add("Ray start", 2.0)
    with timer.stage("training set"):
        pass
    timer.add("Ray start", 1.0)
    assert list(timer.seconds) == ["Ray start", "training set"]
    assert timer.seconds["Ray start"] == 3.0 and timer.seconds["training set"] >= 0.0


def test_a_stage_that_raises_is_still_timed() -> None:
    timer = Stopwatch()
    with pytest.raises(ValueError), timer.stage("evaluation"):
        raise ValueError("boom")
    assert "evaluation" in timer.seconds


def test_rows_name_what_the_stages_do_not_cover() -> None:
    timer = Stopwatch()
    timer.add("epochs", 6.0)
    timer.add("worker-group start", -0.5)  # a clock skew never makes a stage negative
    assert timer.rows(10.0) == [("epochs", 6.0), ("worker-group start", 0.0), ("other", 4.0)]
    assert timer.rows() == [("epochs", 6.0), ("worker-group start", 0.0)]


def test_metric_names_are_mlflow_safe() -> None:
    timer = Stopwatch()
    timer.add("Ray start", 1.5)
    timer.add("worker-group start", 2.5)
    assert timer.metrics() == {"time_ray_start_s": 1.5, "time_worker_group_start_s": 2.5}


def test_the_train_command_prints_every_stage_and_its_share(capsys: pytest.CaptureFixture[str]) -> None:
    from raylane.cli.train import _print_timings

    timer = Stopwatch()
    timer.add("Ray start", 1.0)
    timer.add("epochs", 2.0)
    _print_timings(timer, 4.0)
    text = capsys.readouterr().out
    assert "where the 4.0s went" in text
    for row in (("Ray start", "1.0", "25%"), ("epochs", "2.0", "50%"), ("other", "1.0", "25%")):
        line = next(li for li in text.splitlines() if row[0] in li)
        assert row[1] in line and row[2] in line
