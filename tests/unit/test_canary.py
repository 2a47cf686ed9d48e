"""The canary without Ray: the entity split (stable, sticky, on target) and the judge's rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raylane.config import ProjectConfig, load_config
from raylane.errors import ConfigError
from raylane.monitoring.canary import judge
from raylane.registry import Rollout
from raylane.serving.rollout import bucket
from raylane.testing import example_config_path

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def cfg(tmp_path: Path) -> ProjectConfig:
    env = {"CHURN_DATA": str(tmp_path / "data"), "RAYLANE_STORAGE": str(tmp_path / "store")}
    overrides = [
        "serve.rollout.mode=canary",
        "serve.rollout.steps=[10, 50]",
        "serve.rollout.min_predictions=100",
        "serve.rollout.min_labels=100",
        "serve.rollout.margin=0.02",
        "serve.rollout.max_step_s=1h",
    ]
    return load_config(example_config_path(), overrides, env=env)


def _rollout(step: int = 0, percent: float = 10.0) -> Rollout:
    return Rollout("canary", "1", "2", step, percent, since=T0, step_since=T0 + timedelta(minutes=step))


def _answers(
    version: str, n: int, skill: float, seed: int, labelled: float = 1.0, latency_ms: float = 5.0
) -> pd.DataFrame:
    """``n`` answers by ``version``; ``skill`` 1 ranks every label right, 0.5 is a coin; each
    request scored in about ``latency_ms``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    right = rng.random(n) < skill
    score = np.where(right, y, 1 - y) * 0.6 + rng.random(n) * 0.4
    label = np.where(rng.random(n) < labelled, y, np.nan)
    ts = [T0 + timedelta(minutes=5, seconds=i) for i in range(n)]
    latency = latency_ms * rng.lognormal(0, 0.3, n)
    frame = {"ts": ts, "model_version": version, "prediction": score, "label": label, "latency_ms": latency}
    return pd.DataFrame(frame)


NO_FAILURES = pd.DataFrame({"ts": pd.Series([], dtype="datetime64[us, UTC]"), "model_version": [], "reason": []})


def test_the_split_is_on_target_stable_and_sticky_as_it_grows() -> None:
    keys = list(range(100_000, 102_000))  # 2,000 entities
    for percent in (5, 25, 50):
        share = np.mean([bucket(k) < percent for k in keys]) * 100
        assert abs(share - percent) <= 3, (percent, share)
    assert [bucket(k) for k in keys[:50]] == [bucket(k) for k in keys[:50]]  # the same on every call
    assert bucket(7) == bucket("7")  # the key's text: an int and its JSON string are one entity
    at_5 = {k for k in keys if bucket(k) < 5}
    assert at_5 <= {k for k in keys if bucket(k) < 25}  # an entity in the canary stays in it


def test_a_worse_challenger_is_aborted_with_its_evidence(cfg: ProjectConfig) -> None:
    served = pd.concat([_answers("1", 900, 0.9, 1), _answers("2", 150, 0.5, 2)])
    v = judge(cfg, _rollout(), served, NO_FAILURES, T0 + timedelta(minutes=10))
    assert v.action == "abort" and "worse than the champion" in v.reason
    e = v.evidence
    assert e["labelled"] == {"challenger": 150, "champion": 900} and e["step_answers"]["challenger"] == 150
    assert e["values"]["champion"] > 0.85 > 0.65 > e["values"]["challenger"]
    assert e["interval"][1] < -0.02 and e["metric"] == "roc_auc"


def test_a_challenger_as_good_advances_then_is_promoted_after_the_last_step(cfg: ProjectConfig) -> None:
    served = pd.concat([_answers("1", 900, 0.8, 3), _answers("2", 600, 0.97, 4)])
    at = T0 + timedelta(minutes=20)
    first = judge(cfg, _rollout(0, 10), served, NO_FAILURES, at)
    assert first.action == "advance" and "to 50%" in first.reason and first.evidence["interval"][0] >= -0.02
    assert judge(cfg, _rollout(1, 50), served, NO_FAILURES, at).action == "promote"


def test_too_little_evidence_waits_then_aborts_after_max_step(cfg: ProjectConfig) -> None:
    served = pd.concat([_answers("1", 900, 0.8, 5), _answers("2", 300, 0.8, 6, labelled=0.2)])
    v = judge(cfg, _rollout(), served, NO_FAILURES, T0 + timedelta(minutes=30))
    assert v.action == "wait" and "labelled challenger answers 5" in v.reason  # ~60 of 100
    late = judge(cfg, _rollout(), served, NO_FAILURES, T0 + timedelta(hours=2))
    assert late.action == "abort" and "serve.rollout.max_step_s" in late.reason


def test_the_error_guard_aborts_before_labels_come_back(cfg: ProjectConfig) -> None:
    served = pd.concat([_answers("1", 900, 0.8, 7), _answers("2", 40, 0.8, 8, labelled=0.0)])
    at = T0 + timedelta(minutes=6)
    failures = pd.DataFrame(
        {"ts": [at] * 3, "model_version": ["2", "2", "1"], "reason": ["model_error", "model_error", "model_error"]}
    )
    assert judge(cfg, _rollout(), served, failures.iloc[:1], at).action == "wait"  # 1 of ≥100: 1 %
    v = judge(cfg, _rollout(), served, failures, at)  # 2 of the challenger's: 2 %, over 1 %
    assert v.action == "abort" and v.reason.startswith("guard:") and v.evidence["errors"] == 2
    out_of_range = failures.assign(reason="out_of_range")  # the input's fault, not the model's
    assert judge(cfg, _rollout(), served, out_of_range, at).action == "wait"


def test_the_latency_guard_aborts_a_slow_challenger_once_both_have_enough_answers(tmp_path: Path) -> None:
    env = {"CHURN_DATA": str(tmp_path), "RAYLANE_STORAGE": str(tmp_path)}
    cfg = load_config(example_config_path(), ["serve.rollout.mode=canary", "serve.rollout.min_labels=100"], env=env)
    at = T0 + timedelta(minutes=20)
    champion = _answers("1", 900, 0.8, 11, latency_ms=5.0)
    slow = pd.concat([champion, _answers("2", 600, 0.8, 12, latency_ms=20.0)])
    v = judge(cfg, _rollout(), slow, NO_FAILURES, at)
    assert v.action == "abort" and "p99 scoring latency" in v.reason and "max_latency_ratio 3" in v.reason
    p99 = v.evidence["latency_p99_ms"]
    assert p99["challenger"] > 3 * p99["champion"] > 0
    near = pd.concat([champion, _answers("2", 600, 0.8, 12, latency_ms=7.0)])  # slower, within 3×
    assert not judge(cfg, _rollout(), near, NO_FAILURES, at).reason.startswith("guard:")
    few = pd.concat([champion, _answers("2", 60, 0.8, 12, latency_ms=20.0)])  # 60 of the 500 it needs
    v = judge(cfg, _rollout(), few, NO_FAILURES, at)
    assert v.action == "wait" and v.evidence["latency_p99_ms"]["challenger"] is None
    off = load_config(
        example_config_path(),
        ["serve.rollout.mode=canary", "serve.rollout.min_labels=100", "serve.rollout.max_latency_ratio=null"],
        env=env,
    )
    assert not judge(off, _rollout(), slow, NO_FAILURES, at).reason.startswith("guard:")


def test_the_judgement_is_reproducible(cfg: ProjectConfig) -> None:
    served = pd.concat([_answers("1", 900, 0.8, 9), _answers("2", 300, 0.82, 10)])
    at = T0 + timedelta(minutes=20)
    a, b = (judge(cfg, _rollout(), served, NO_FAILURES, at) for _ in range(2))
    assert a.evidence["interval"] == b.evidence["interval"]


def test_steps_must_increase_within_a_hundred(tmp_path: Path) -> None:
    env = {"CHURN_DATA": str(tmp_path), "RAYLANE_STORAGE": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"serve.rollout.steps must be increasing percents"):
        load_config(example_config_path(), ["serve.rollout.steps=[25, 5]"], env=env)
    with pytest.raises(ConfigError, match=r"serve.rollout.steps must be increasing percents"):
        load_config(example_config_path(), ["serve.rollout.steps=[50, 150]"], env=env)
