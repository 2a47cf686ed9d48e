"""Scoring's outcomes, per entity: `Scored`, or `Failed` with the answer it gets; `isolated` keeps
one entity's failure its own."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from raylane.serving.api import ApiError

__all__ = ["Failed", "Scored", "failure", "isolated", "non_finite"]

log = logging.getLogger("ray.serve")


@dataclass
class Scored:
    """One entity's score (`raylane.serving.api.Score`) and the features it was scored with."""

    prediction: Any  # the class label (classification) or the value (regression)
    probabilities: list[float] | None  # multiclass: one per class
    features: dict[str, Any]
    known: bool  # False: no features in the online store (imputed)
    class_index: int | None = None  # multiclass: the predicted class's index (the monitor profiles it)
    latency_ms: float | None = None  # how long its request took to be scored (features and model)


@dataclass(frozen=True)
class Failed:
    """An entity the model could not score; its request is answered with ``status``."""

    status: int
    problem: str
    fields: tuple[str, ...] = ()
    reason: str = "model_error"  # the failures metric's tag: ``out_of_range`` or ``model_error``


def isolated(score: Callable[[list[Any]], list[Scored | Failed]], rows: list[Any]) -> list[Scored | Failed]:
    """``score(rows)``; when it raises, each row alone, so a failure is its own row's and no other's."""
    try:
        return score(rows)
    except Exception as exc:
        if len(rows) > 1:
            return [r for row in rows for r in isolated(score, [row])]
        log.exception("raylane: the model could not score an entity")
        return [Failed(500, f"the model could not score this entity ({type(exc).__name__})")]


def non_finite(overflowed: list[str], given: dict[str, Any], dtypes: Mapping[str, str]) -> Failed:
    """Why a prediction was not finite: the fields out of the model's range, or the model itself."""
    fields = overflowed or [f for f, v in given.items() if dtypes.get(f) in ("int64", "float64") and v is not None]
    if not fields:
        return Failed(500, "the model's output is not finite for this entity's stored features")
    return Failed(
        422,
        "the model's output is not finite for these values: they are far outside the range it was trained on",
        tuple(fields),
        reason="out_of_range",
    )


def failure(failed: list[tuple[int, Failed]], *, many: bool) -> ApiError:
    """The answer to a request with entities that could not be scored: 422 if each was its input's
    fault, the first 5xx otherwise."""
    errors = []
    for i, f in failed:
        where = f"entities[{i}]." if many else ""
        errors += [{"field": f"{where}{name}", "problem": f.problem} for name in f.fields] or [
            {"field": f"entities[{i}]" if many else "(body)", "problem": f.problem}
        ]
    status = 422 if all(f.status == 422 for _, f in failed) else next(f.status for _, f in failed if f.status != 422)
    listed = "; ".join(f"{e['field']}: {e['problem']}" for e in errors[:10])
    head = "invalid request" if status == 422 else "the model failed"
    return ApiError(status, f"{head}: {listed}", errors=errors)
