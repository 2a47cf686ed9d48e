"""The canary's judge (``serve.rollout.mode: canary``): the monitor's rule for each step.

At every step the challenger answers ``percent`` of entities (`raylane.serving.rollout`); both
versions' answers are in the inference log under their versions, joined with the `/feedback`
labels that came back. `judge` reads them and decides:

- **abort** when a guard trips: the challenger failed to score more than
  ``max_error_rate`` of its entities at this step (model errors; counted against at least
  ``min_predictions``, so a few early failures already count), or its p99 scoring latency at
  this step is over ``max_latency_ratio`` × the champion's (once each has
  max(``min_predictions``, `LATENCY_MIN`) answers at the step);
- **wait** until the step has ``min_predictions`` challenger answers and each version has
  ``min_labels`` labelled answers since the rollout began;
- then the difference d = challenger − champion in the gate's metric (signed so that positive is
  better), on every labelled answer since the rollout began, with a bootstrap interval at
  ``confidence`` (`scipy.stats.bootstrap`, each version resampled on its own, ``resamples`` times,
  seeded): **advance** (or **promote** after the last step) when the whole interval is above
  ``-margin``; **abort** when it is all below; otherwise wait for more labels;
- **abort** a step that has reached no verdict after ``max_step_s``.

The verdict carries its evidence (counts, both metrics, the interval, the guard), which the
monitor records with the decision. The judge is pure; the monitor applies the verdict to the
registry, which is the rollout's state, so a restarted monitor continues from the recorded step
and never takes a decision twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from raylane.monitoring.analysis import labelled_arrays

if TYPE_CHECKING:
    from raylane.config import ProjectConfig
    from raylane.registry import Rollout

__all__ = ["Verdict", "judge"]

LATENCY_MIN = 100  # answers per version at a step before their p99 latencies are compared


@dataclass(frozen=True)
class Verdict:
    """``wait``, ``advance`` (to the next step), ``promote`` or ``abort``, why, and the evidence."""

    action: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


def judge(cfg: ProjectConfig, rollout: Rollout, served: pd.DataFrame, failures: pd.DataFrame, at: datetime) -> Verdict:
    """The verdict on ``rollout``'s current step.

    Args:
        served: The inference log's predictions with their labels (`raylane.inference_log.read`).
        failures: The inference log's scoring failures (`raylane.inference_log.read_failures`).
        at: Now.
    """
    from raylane.model import primary_metric

    rc = cfg.serve.rollout
    task = cfg.model.task
    metric, mode = primary_metric(task, cfg.registry.promotion.metric)
    served = served[pd.to_datetime(served["ts"], utc=True) >= pd.Timestamp(rollout.since)].reset_index(drop=True)
    in_step = pd.to_datetime(served["ts"], utc=True) >= pd.Timestamp(rollout.step_since)
    version = served["model_version"].astype(str)
    challenger, champion = served[version == rollout.challenger], served[version == rollout.champion]
    answered = int((in_step & (version == rollout.challenger)).sum())
    fts = pd.to_datetime(failures["ts"], utc=True)
    errors = int(
        (
            (failures["model_version"].astype(str) == rollout.challenger)
            & (failures["reason"] == "model_error")
            & (fts >= pd.Timestamp(rollout.step_since))
        ).sum()
    )
    labelled = {"challenger": challenger.dropna(subset=["label"]), "champion": champion.dropna(subset=["label"])}
    elapsed = (at - rollout.step_since).total_seconds()
    evidence: dict[str, Any] = {
        "step": rollout.step,
        "percent": rollout.percent,
        "champion": rollout.champion,
        "challenger": rollout.challenger,
        "step_answers": {"challenger": answered, "champion": int((in_step & (version == rollout.champion)).sum())},
        "labelled": {k: len(v) for k, v in labelled.items()},
        "errors": errors,
        "error_rate": errors / max(errors + answered, rc.min_predictions),
        "metric": metric,
        "step_elapsed_s": round(elapsed, 1),
    }
    if evidence["error_rate"] > rc.max_error_rate:
        return Verdict(
            "abort",
            f"guard: the challenger failed to score {errors} of {errors + answered} entities at this step"
            f" (over serve.rollout.max_error_rate {rc.max_error_rate:g})",
            evidence,
        )
    slow = _latency_guard(rc.max_latency_ratio, max(rc.min_predictions, LATENCY_MIN), served[in_step], rollout)
    evidence["latency_p99_ms"] = slow[1]
    if slow[0]:
        return Verdict("abort", slow[0], evidence)
    short = [
        f"{what} {have}/{need}"
        for what, have, need in (
            ("challenger answers at this step", answered, rc.min_predictions),
            ("labelled challenger answers", len(labelled["challenger"]), rc.min_labels),
            ("labelled champion answers", len(labelled["champion"]), rc.min_labels),
        )
        if have < need
    ]
    if short:
        return _timed_out(elapsed, rc.max_step_s.total_seconds(), f"waiting for evidence: {', '.join(short)}", evidence)
    arrays = {k: labelled_arrays(task, v) for k, v in labelled.items()}
    if any(a is None for a in arrays.values()):
        return Verdict("abort", "the inference log holds no class probabilities to judge a multiclass model", evidence)
    ch, cp = arrays["challenger"], arrays["champion"]
    assert ch is not None and cp is not None
    point, low, high = _difference(task, metric, mode, ch, cp, rc.confidence, rc.resamples, rc.seed)
    evidence |= {
        "values": {"challenger": _value(task, metric, ch), "champion": _value(task, metric, cp)},
        "difference": point,
        "interval": [low, high],
        "confidence": rc.confidence,
        "margin": rc.margin,
    }
    shown = f"{metric} challenger − champion {point:+.4f}, {rc.confidence:.0%} interval [{low:+.4f}, {high:+.4f}]"
    if not np.isfinite([low, high]).all():
        return _timed_out(elapsed, rc.max_step_s.total_seconds(), f"no interval yet ({shown})", evidence)
    if high < -rc.margin:
        return Verdict("abort", f"worse than the champion: {shown}, all below −margin {rc.margin:g}", evidence)
    if low >= -rc.margin:
        last = rollout.step + 1 >= len(rc.steps)
        then = "promote" if last else "advance"
        nxt = "" if last else f" to {rc.steps[rollout.step + 1]:g}%"
        return Verdict(then, f"not worse than the champion: {shown}, all above −margin {rc.margin:g}{nxt}", evidence)
    return _timed_out(elapsed, rc.max_step_s.total_seconds(), f"inconclusive: {shown}", evidence)


def _latency_guard(
    ratio: float | None, need: int, step: pd.DataFrame, rollout: Rollout
) -> tuple[str | None, dict[str, float | None]]:
    """Why the challenger is too slow (None while it is not, or while the step has too few answers
    of either version), and both versions' p99 scoring latency at the step."""
    version = step["model_version"].astype(str)
    p99: dict[str, float | None] = {}
    for who, v in (("challenger", rollout.challenger), ("champion", rollout.champion)):
        ms = step.loc[version == v, "latency_ms"].to_numpy(dtype=float)
        ms = ms[np.isfinite(ms)]
        p99[who] = round(float(np.quantile(ms, 0.99)), 3) if len(ms) >= need else None
    ours, theirs = p99["challenger"], p99["champion"]
    if ratio is None or ours is None or theirs is None or ours <= ratio * theirs:
        return None, p99
    return (
        f"guard: the challenger's p99 scoring latency at this step is {ours:.1f} ms, over"
        f" serve.rollout.max_latency_ratio {ratio:g} × the champion's {theirs:.1f} ms",
        p99,
    )


def _timed_out(elapsed: float, limit: float, reason: str, evidence: dict[str, Any]) -> Verdict:
    if elapsed > limit:
        return Verdict("abort", f"no verdict within serve.rollout.max_step_s ({limit:g} s): {reason}", evidence)
    return Verdict("wait", reason, evidence)


def _value(task: str, metric: str, arrays: tuple[np.ndarray, np.ndarray]) -> float:
    from raylane.model import metric_value

    return metric_value(task, metric, *arrays)


def _difference(
    task: str,
    metric: str,
    mode: str,
    challenger: tuple[np.ndarray, np.ndarray],
    champion: tuple[np.ndarray, np.ndarray],
    confidence: float,
    resamples: int,
    seed: int,
) -> tuple[float, float, float]:
    """challenger − champion (positive: the challenger is better) and its percentile bootstrap
    interval, each version's labelled answers resampled on their own."""
    from scipy.stats import bootstrap

    sign = 1.0 if mode == "max" else -1.0

    def diff(i: np.ndarray, j: np.ndarray) -> float:
        a, b = i.astype(int), j.astype(int)
        ours = _value(task, metric, (challenger[0][a], challenger[1][a]))
        theirs = _value(task, metric, (champion[0][b], champion[1][b]))
        return sign * (ours - theirs)

    idx = (np.arange(len(challenger[0]), dtype=float), np.arange(len(champion[0]), dtype=float))
    point = diff(*idx)
    res = bootstrap(
        idx,
        diff,
        n_resamples=resamples,
        vectorized=False,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return float(point), float(ci.low), float(ci.high)
