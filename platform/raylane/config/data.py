"""The data sections: raw sources and their columns, labels, the entity and the feature views."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    model_validator,
)

from raylane.config._base import IDENT, ColumnType, Duration, ProjectPath, StrictModel

# --------------------------------------------------------------------------- data


class ColumnSpec(StrictModel):
    """A column a raw source must have."""

    dtype: ColumnType = Field(
        description="Logical type. Integers widen to float64; int64 columns with nulls are accepted."
    )
    max_null_fraction: float = Field(
        1.0, ge=0.0, le=1.0, description="Ingestion fails when a larger fraction of rows is null."
    )
    description: str = Field("", description="Free text, copied into the Feast field's description.")
    kind: Literal["categorical", "text"] | None = Field(
        None,
        description="For a `string` feature: `categorical` (the default: its most frequent values get an id"
        " each) or `text` (tokenized: a vocabulary of the training split's most frequent tokens).",
    )
    max_length: int | None = Field(
        None, ge=1, le=4096, description="`kind: text`: tokens kept per value (default 64); longer text is cut."
    )
    vocab_size: int | None = Field(
        None, ge=1, le=1_000_000, description="`kind: text`: most frequent training tokens kept (default 5000)."
    )

    @model_validator(mode="after")
    def _check_kind(self) -> ColumnSpec:
        if self.kind is not None and self.dtype != "string":
            raise ValueError(f"`kind: {self.kind}` is for string columns; this one is {self.dtype}")
        if not self.is_text:
            for name in ("max_length", "vocab_size"):
                if getattr(self, name) is not None:
                    raise ValueError(f"`{name}` is for `kind: text` columns; add `kind: text` or remove it")
        return self

    @property
    def is_text(self) -> bool:
        return self.kind == "text"

    @property
    def text_length(self) -> int:
        return self.max_length or TEXT_MAX_LENGTH

    @property
    def text_vocab(self) -> int:
        return self.vocab_size or TEXT_VOCAB_SIZE


TEXT_MAX_LENGTH = 64
TEXT_VOCAB_SIZE = 5000


def _column_shorthand(value: Any) -> Any:
    # ``plan: string`` is shorthand for ``plan: {dtype: string}``.
    if isinstance(value, Mapping):
        return {k: {"dtype": v} if isinstance(v, str) else v for k, v in value.items()}
    return value


class SourceConfig(StrictModel):
    """A raw data source: a parquet or csv file, a folder of them, or a glob."""

    name: str = Field(pattern=IDENT, description="Name used by feature views and labels to refer to it.")
    path: ProjectPath = Field(description="File, folder or glob of the raw data.")
    format: Literal["parquet", "csv"] | None = Field(
        None, description="File format; inferred from the file suffix when omitted."
    )
    timestamp_column: str = Field(
        description="Event time of each row: when the values became true (feature rows) or the label time."
    )
    columns: Annotated[dict[str, ColumnSpec], BeforeValidator(_column_shorthand)] = Field(
        description="Required columns besides the timestamp, with their types (`name: dtype` or a full spec)."
    )

    @property
    def file_format(self) -> Literal["parquet", "csv"]:
        if self.format is not None:
            return self.format
        return "csv" if str(self.path).lower().endswith((".csv", ".csv.gz")) else "parquet"


class LabelsConfig(StrictModel):
    """Where the training labels come from."""

    source: str = Field(description="Name of the source (in `data.sources`) that holds the labels.")
    column: str = Field(description="The label column of that source.")


class DataConfig(StrictModel):
    """Raw sources read by ingestion (Ray Data) and written as the offline tables Feast reads."""

    sources: list[SourceConfig] = Field(min_length=1, description="Raw sources, feature sources and labels.")
    labels: LabelsConfig = Field(description="The label table: entity key, label time and label.")

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)


# --------------------------------------------------------------------------- features


class EntityConfig(StrictModel):
    """The entity that features describe and predictions are made for."""

    name: str = Field(pattern=IDENT, description="Feast entity name.")
    join_key: str = Field(pattern=IDENT, description="Key column present in every source.")
    dtype: Literal["int64", "string"] = Field("int64", description="Type of the key.")
    description: str = Field("", description="Free text for the Feast entity.")


class FeatureViewConfig(StrictModel):
    """A Feast feature view over one source."""

    name: str = Field(pattern=IDENT, description="Feast feature view name.")
    source: str = Field(description="Name of the source (in `data.sources`) it reads.")
    ttl: Duration = Field(description="How long a feature row stays valid: an as-of join ignores rows older than this.")
    features: list[str] | None = Field(
        None, description="Columns of the source served as features; all but the join key when omitted."
    )
    online: bool = Field(True, description="Materialize into the online store for serving.")
    tags: dict[str, str] = Field(default_factory=dict, description="Feast tags.")


class FeaturesConfig(StrictModel):
    """Feature views and the feature service the model reads."""

    views: list[FeatureViewConfig] = Field(min_length=1, description="Feature views.")
    service: str | None = Field(
        None, pattern=IDENT, description="Feast feature service name; `<project>_model` when omitted."
    )
