"""The API's request models and the inference log, without Ray: strict types, field paths, the join."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from raylane.config import ProjectConfig, load_config
from raylane.inference_log import LogWriter, feedback_schema, log_dir, prediction_schema, read, read_rejected
from raylane.serving.ids import RequestIds, service_secret
from raylane.serving.schemas import Schemas, field_path
from raylane.testing import example_config_path


@pytest.fixture
def cfg(tmp_path: Path) -> ProjectConfig:
    env = {"CHURN_DATA": str(tmp_path / "data"), "RAYLANE_STORAGE": str(tmp_path / "store")}
    return load_config(example_config_path(), ["serve.max_entities_per_request=3"], env=env)


def _errors(schemas: Schemas, body: bytes) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        schemas.parse_predict(body)
    return [(field_path(tuple(e["loc"])), e["type"]) for e in info.value.errors()]


def test_one_entity_or_many(cfg: ProjectConfig) -> None:
    s = Schemas(cfg)
    [one] = s.parse_predict(b'{"customer_id": 7}')
    assert one.customer_id == 7 and one.tenure_months is None
    many = s.parse_predict(b'{"entities": [{"customer_id": 1}, {"customer_id": 2, "monthly_charges": 3}]}')
    assert [e.customer_id for e in many] == [1, 2] and many[1].monthly_charges == 3.0


@pytest.mark.parametrize(
    ("body", "where", "kind"),
    [
        (b'{"customer_id": "7"}', "customer_id", "int_type"),
        (b'{"customer_id": 7.5}', "customer_id", "int_type"),
        (b'{"customer_id": true}', "customer_id", "int_type"),
        (b'{"customer_id": 7, "monthly_charges": NaN}', "monthly_charges", "finite_number"),
        (b'{"customer_id": 7, "monthly_charges": -Infinity}', "monthly_charges", "finite_number"),
        (b'{"customer_id": 7, "plan": 3}', "plan", "string_type"),
        (b'{"customer_id": 7, "colour": "red"}', "colour", "extra_forbidden"),
        (b'{"plan": "basic"}', "customer_id", "missing"),
        (b'{"entities": []}', "entities", "too_short"),
        (
            b'{"entities": [{"customer_id": 1}, {"customer_id": 2}, {"customer_id": 3}, {"customer_id": 4}]}',
            "entities",
            "too_long",
        ),
        (b'{"entities": [{"customer_id": 1}, {"customer_id": "x"}]}', "entities[1].customer_id", "int_type"),
        (b'{"customer_id": 7', "(body)", "json_invalid"),
        (b'{"customer_id": 9223372036854775808}', "customer_id", "less_than_equal"),
        (b'{"customer_id": -9223372036854775809}', "customer_id", "greater_than_equal"),
        (b'{"customer_id": 7, "tenure_months": 100000000000000000000}', "tenure_months", "less_than_equal"),
        (b'{"customer_id": 7, "monthly_charges": 1e308}', "monthly_charges", "less_than_equal"),
        (b'{"customer_id": 7, "monthly_charges": -1e39}', "monthly_charges", "greater_than_equal"),
    ],
)
def test_bad_bodies_name_the_field(cfg: ProjectConfig, body: bytes, where: str, kind: str) -> None:
    assert (where, kind) in _errors(Schemas(cfg), body)


def test_feedback_needs_a_request_id_and_a_typed_label(cfg: ProjectConfig) -> None:
    s = Schemas(cfg)
    ok = s.Feedback.model_validate_json(b'{"request_id": "' + b"a" * 32 + b'", "label": 1}')
    assert ok.label == 1 and ok.customer_id is None
    for bad in (b'{"request_id": "xyz", "label": 1}', b'{"request_id": "' + b"a" * 32 + b'", "label": "yes"}'):
        with pytest.raises(ValidationError):
            s.Feedback.model_validate_json(bad)


def test_int64_and_float32_limits_are_accepted(cfg: ProjectConfig) -> None:
    [e] = Schemas(cfg).parse_predict(
        b'{"customer_id": 9223372036854775807, "tenure_months": -9223372036854775808, "monthly_charges": 3.4e38}'
    )
    assert e.customer_id == 2**63 - 1 and e.monthly_charges == 3.4e38


@pytest.mark.parametrize("label", [b"999", b"-7", b"2", b"0.5", b"true"])
def test_a_binary_task_takes_only_0_or_1_as_a_label(cfg: ProjectConfig, label: bytes) -> None:
    s = Schemas(cfg)
    with pytest.raises(ValidationError, match="label"):
        s.Feedback.model_validate_json(b'{"request_id": "' + b"a" * 32 + b'", "label": ' + label + b"}")
    for good in (b"0", b"1"):
        assert s.Feedback.model_validate_json(b'{"request_id": "' + b"a" * 32 + b'", "label": ' + good + b"}")


def test_a_regression_label_is_finite_and_within_float32(tmp_path: Path) -> None:
    env = {"CHURN_DATA": str(tmp_path / "data"), "RAYLANE_STORAGE": str(tmp_path / "store")}
    s = Schemas(
        load_config(example_config_path(), ["model.task=regression", "registry.promotion.metric=rmse"], env=env)
    )
    rid = b'{"request_id": "' + b"a" * 32 + b'", "label": '
    assert s.Feedback.model_validate_json(rid + b"12.5}").label == 12.5
    for bad in (b"1e39", b"NaN", b"Infinity"):
        with pytest.raises(ValidationError):
            s.Feedback.model_validate_json(rid + bad + b"}")


def test_request_ids_are_checkable_across_replicas_and_forgeries_are_not(cfg: ProjectConfig) -> None:
    secret = service_secret(cfg.storage_root)
    assert service_secret(cfg.storage_root) == secret  # made once, then read
    assert (cfg.storage_root / "serve" / "request-id.key").stat().st_mode & 0o777 == 0o600
    one, other = RequestIds(secret), RequestIds(secret)
    ids = {one.new() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert all(other.issued(i) for i in ids)  # another replica, same secret
    forged = next(iter(ids))[:16] + "0" * 16
    assert not other.issued(forged) and not other.issued("a" * 32) and not other.issued("ab")
    assert not RequestIds(service_secret(cfg.storage_root / "elsewhere")).issued(next(iter(ids)))


def _prediction(cfg: ProjectConfig, request_id: str, key: int, **over: object) -> dict[str, object]:
    base = {"ts": datetime.now(UTC), "model_name": "churn", "model_version": "1", "prediction": 0.5}
    return {**base, "request_id": request_id, "customer_id": key, **over}


def test_a_row_the_log_cannot_hold_is_quarantined_and_holds_back_nothing(cfg: ProjectConfig) -> None:
    w = LogWriter(log_dir(cfg), "predictions", prediction_schema(cfg), 10, "t")
    w.append([_prediction(cfg, "r1", 1), _prediction(cfg, "r2", 2, tenure_months=10**20), _prediction(cfg, "r3", 3)])
    assert w.flush() == 3
    assert w.pending == 0 and w.written == 2 and w.rejected == 1 and w.error is None
    assert sorted(read(cfg)["request_id"]) == ["r1", "r3"]
    [bad] = read_rejected(cfg)
    assert bad["row"]["request_id"] == "r2" and bad["row"]["tenure_months"] == 10**20 and bad["reason"]
    w.append([_prediction(cfg, "r4", 4)])  # the next flush is not held back either
    assert w.flush() == 1 and sorted(read(cfg)["request_id"]) == ["r1", "r3", "r4"]


def test_a_failing_disk_keeps_the_rows_and_says_so(cfg: ProjectConfig, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    w = LogWriter(blocked, "predictions", prediction_schema(cfg), 10, "t")
    w.append([_prediction(cfg, "r1", 1)])
    with pytest.raises(OSError):
        w.flush()
    assert w.pending == 1 and w.error and "NotADirectoryError" in w.error and w.failing_since
    blocked.unlink()
    blocked.mkdir()
    assert w.flush() == 1 and w.error is None and w.pending == 0


def test_openapi_body_lists_the_features(cfg: ProjectConfig) -> None:
    schema = Schemas(cfg).openapi_predict()["requestBody"]["content"]["application/json"]["schema"]
    one, many = schema["oneOf"]
    assert set(cfg.feature_dtypes()) < set(one["properties"]) and one["required"] == ["customer_id"]
    assert many["properties"]["entities"]["maxItems"] == 3


def test_inference_log_joins_feedback_per_entity_or_per_request(cfg: ProjectConfig) -> None:
    now = datetime.now(UTC)
    preds = LogWriter(log_dir(cfg), "predictions", prediction_schema(cfg), 10, "t")
    fb = LogWriter(log_dir(cfg), "feedback", feedback_schema(cfg), 10, "t")
    base = {"ts": now, "model_name": "churn", "model_version": "1", "plan": "basic", "tenure_months": 3}
    preds.append([{**base, "request_id": "r1", "customer_id": k, "prediction": 0.1 * k} for k in (1, 2)])
    preds.append([{**base, "request_id": "r2", "customer_id": 3, "prediction": 0.5}])
    assert preds.flush() == 3 and preds.flush() == 0
    fb.append([{"request_id": "r1", "ts": now, "customer_id": 2, "label": 1}])
    fb.append([{"request_id": "r2", "ts": now, "customer_id": None, "label": 0}])
    fb.append([{"request_id": "r2", "ts": now.replace(year=now.year + 1), "customer_id": None, "label": 1}])
    fb.flush()
    log = read(cfg).set_index("customer_id")
    assert pd.isna(log.loc[1, "label"]) and log.loc[2, "label"] == 1
    assert log.loc[3, "label"] == 1  # the latest label of the request wins
    assert log.loc[1, "tenure_months"] == 3 and pd.isna(log.loc[1, "monthly_charges"])
    assert not list((log_dir(cfg) / "predictions").rglob(".*.tmp"))  # written under a temporary name


def test_an_empty_log_reads_as_an_empty_frame(cfg: ProjectConfig) -> None:
    log = read(cfg)
    assert log.empty and {"request_id", "customer_id", "prediction", "label"} <= set(log.columns)


def test_feedback_for_a_multiclass_model_names_its_classes_and_needs_an_issued_id() -> None:
    from types import SimpleNamespace

    from raylane.serving.api import ApiError, _check_feedback

    ids = RequestIds("ab" * 32)
    bundle = SimpleNamespace(pre=SimpleNamespace(classes=["billing", "bug", "login"]))
    task = SimpleNamespace(model=SimpleNamespace(task="multiclass"))
    replica: Any = SimpleNamespace(request_ids=ids, cfg=task, model=SimpleNamespace(bundle=bundle))
    served = ids.new()
    _check_feedback(replica, SimpleNamespace(request_id=served, label="bug"))  # a class: accepted
    with pytest.raises(ApiError) as refused:
        _check_feedback(replica, SimpleNamespace(request_id=served, label="refund"))
    assert refused.value.status == 422 and "['billing', 'bug', 'login']" in str(refused.value)
    with pytest.raises(ApiError) as unknown:
        _check_feedback(replica, SimpleNamespace(request_id=RequestIds("cd" * 32).new(), label="bug"))
    assert unknown.value.status == 404
