"""Per-entity isolation in the replica's batches: one entity's failure is its own request's answer."""

from __future__ import annotations

from typing import Any

from raylane.serving.scoring import Failed, Scored, failure, isolated, non_finite


def _scorer(bad: set[int], calls: list[list[int]]) -> Any:
    def score(rows: list[int]) -> list[Scored | Failed]:
        calls.append(list(rows))
        if bad & set(rows):
            raise OverflowError("Python int too large to convert to C long")
        return [Scored(float(r), None, {}, True) for r in rows]

    return score


def test_a_failing_batch_is_scored_entity_by_entity() -> None:
    calls: list[list[int]] = []
    out = isolated(_scorer({3}, calls), [1, 2, 3, 4])
    assert [type(r).__name__ for r in out] == ["Scored", "Scored", "Failed", "Scored"]
    assert [r.prediction for r in out if isinstance(r, Scored)] == [1.0, 2.0, 4.0]
    failed = out[2]
    assert isinstance(failed, Failed) and failed.status == 500 and "OverflowError" in failed.problem
    assert calls == [[1, 2, 3, 4], [1], [2], [3], [4]]  # the good batch costs one call


def test_a_good_batch_is_one_call() -> None:
    calls: list[list[int]] = []
    assert len(isolated(_scorer(set(), calls), [1, 2, 3])) == 3 and calls == [[1, 2, 3]]


def test_a_non_finite_prediction_names_the_fields_or_blames_the_model() -> None:
    dtypes = {"plan": "string", "tenure_months": "int64", "monthly_charges": "float64"}
    named = non_finite(["monthly_charges"], {"monthly_charges": 3e38, "plan": "x"}, dtypes)
    assert named.status == 422 and named.fields == ("monthly_charges",) and named.reason == "out_of_range"
    given = non_finite([], {"tenure_months": 10**18, "plan": "x"}, dtypes)
    assert given.status == 422 and given.fields == ("tenure_months",)
    assert non_finite([], {"plan": "x"}, dtypes).status == 500  # nothing the client sent: the model's fault


def test_a_request_is_answered_by_its_own_failures() -> None:
    bad = Failed(422, "out of range", ("monthly_charges",), reason="out_of_range")
    err = failure([(1, bad)], many=True)
    assert err.status == 422 and err.errors == [{"field": "entities[1].monthly_charges", "problem": "out of range"}]
    assert "entities[1].monthly_charges" in err.message
    one = failure([(0, bad)], many=False)
    assert one.errors[0]["field"] == "monthly_charges"
    mixed = failure([(0, bad), (2, Failed(500, "the model could not score this entity (X)"))], many=True)
    assert mixed.status == 500 and "the model failed" in mixed.message
