"""The HTTP API's request and response models, generated from the project's feature schema.

An entity is its join key plus, optionally, any served feature given at request time (it then
overrides the online store's value). Types are strict: ``"1"`` is not an integer, ``1.5`` is not
an integer, ``NaN`` and ``Infinity`` are not numbers; unknown fields are refused. Integers are
int64 (what Feast, Arrow and the inference log store), floats are within float32's range (what the
model computes in). ``/predict`` takes one entity, or ``{"entities": [...]}`` with 1 to
``serve.max_entities_per_request``. A ``/feedback`` label is one the task allows (`raylane.labels`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, create_model

from raylane.config import ColumnType, ProjectConfig
from raylane.labels import FLOAT32_MAX, invalid_labels, label_rule

__all__ = ["Schemas", "field_path"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_PY: dict[str, Any] = {
    "int64": Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)],
    "float64": Annotated[float, Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)],
    "string": str,
    "bool": bool,
    "timestamp": datetime,
}
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _label_type(cfg: ProjectConfig) -> Any:
    task = cfg.model.task
    if task == "regression":
        return Annotated[float, Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
    source = cfg.data.source(cfg.data.labels.source)
    base = _PY[source.columns[cfg.data.labels.column].dtype]
    if task == "binary":
        return Annotated[base, AfterValidator(_binary_label)]
    return base  # multiclass: one of the serving model's classes, checked by the route


def _binary_label(value: Any) -> Any:
    if invalid_labels("binary", [value])[0]:
        raise ValueError(f"{value!r} is not a label of a binary task; {label_rule('binary')}")
    return value


class Schemas:
    """The pydantic models of one project's API."""

    def __init__(self, cfg: ProjectConfig) -> None:
        key = cfg.entity.join_key
        self.join_key = key
        self.key_dtype: ColumnType = cfg.data.source(cfg.features.views[0].source).columns[key].dtype
        self.feature_dtypes = cfg.feature_dtypes()
        fields: dict[str, Any] = {key: (_PY[self.key_dtype], Field(description=f"The {cfg.entity.name}'s {key}."))}
        for name, dtype in self.feature_dtypes.items():
            fields[name] = (
                _PY[dtype] | None,
                Field(None, description=f"{dtype}; given here it overrides the online store's value."),
            )
        self.Entity: type[BaseModel] = create_model("Entity", __config__=_STRICT, **fields)
        self.Batch: type[BaseModel] = create_model(
            "PredictBatch",
            __config__=_STRICT,
            entities=(
                list[self.Entity],  # type: ignore[name-defined]
                Field(min_length=1, max_length=cfg.serve.max_entities_per_request),
            ),
        )
        feedback: dict[str, Any] = {
            "request_id": (
                str,
                Field(pattern=r"^[0-9a-f]{32}$", description="The `request_id` of a /predict answer."),
            ),
            "label": (_label_type(cfg), Field(description=f"The observed `{cfg.data.labels.column}`.")),
            key: (
                _PY[self.key_dtype] | None,
                Field(None, description="Which entity of a many-entity request the label is for."),
            ),
        }
        self.Feedback: type[BaseModel] = create_model("Feedback", __config__=_STRICT, **feedback)
        self.predict_adapter: TypeAdapter[Any] = TypeAdapter(
            Annotated[  # type: ignore[arg-type]
                Annotated[self.Batch, Tag("batch")] | Annotated[self.Entity, Tag("entity")],  # type: ignore[name-defined]
                Discriminator(lambda v: "batch" if isinstance(v, dict) and "entities" in v else "entity"),
            ]
        )

    def parse_predict(self, body: bytes) -> list[BaseModel]:
        """The entities of a /predict body; raises pydantic's ``ValidationError``."""
        parsed = self.predict_adapter.validate_json(body)
        return list(parsed.entities) if isinstance(parsed, self.Batch) else [parsed]  # type: ignore[attr-defined]

    def openapi_predict(self) -> dict[str, Any]:
        one, many = self.Entity.model_json_schema(), self.Batch.model_json_schema()
        return _body({"oneOf": [_inline(one), _inline(many)]})

    def openapi_feedback(self) -> dict[str, Any]:
        return _body(_inline(self.Feedback.model_json_schema()))


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return dict(walk(schema))


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def field_path(loc: tuple[Any, ...]) -> str:
    """``entities[0].tenure_months`` from pydantic's ``('batch', 'entities', 0, 'tenure_months')``."""
    out = ""
    for part in loc:
        if part in ("batch", "entity") and not out:
            continue  # the union's tag
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"
