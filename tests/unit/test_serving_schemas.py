"""The API's request models and the inference log, without Ray: strict types, field paths, the join."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from raylane.config import ProjectConfig, load_config
from raylane.inference_log import LogWriter, feedback_schema, log_dir, prediction_schema, read
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


def test_openapi_body_lists_the_features(cfg: ProjectConfig) -> None:
    schema = Schemas(cfg).openapi_predict()["requestBody"]["content"]["application/json"]["schema"]
    one, many = schema["oneOf"]
    assert set(cfg.feature_dtypes()) < set(one["properties"]) and one["required"] == ["customer_id"]
    assert many["properties"]["entities"]["maxItems"] == 3


def test_inference_log_joins_feedback_per_entity_or_per_request(cfg: ProjectConfig) -> None:
    now = datetime.now(UTC)
    preds = LogWriter(log_dir(cfg) / "predictions", prediction_schema(cfg), flush_rows=10, writer_id="t")
    fb = LogWriter(log_dir(cfg) / "feedback", feedback_schema(cfg), flush_rows=10, writer_id="t")
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
