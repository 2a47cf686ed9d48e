"""`ProjectConfig`: the whole document, its cross-section checks and the values derived from it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from raylane.config._base import PROJECT_NAME, TASK_METRICS, ColumnType, ProjectPath, StrictModel
from raylane.config.backends import BackendsConfig, ClusterConfig, ProjectJob
from raylane.config.data import ColumnSpec, DataConfig, EntityConfig, FeaturesConfig, FeatureViewConfig
from raylane.config.serving import BatchConfig, MonitorConfig, ServeConfig
from raylane.config.training import SEARCHABLE, ModelConfig, RegistryConfig, TrainConfig, TuneConfig

# --------------------------------------------------------------------------- the project


class ProjectConfig(StrictModel):
    """A raylane project: data, features, model, training, serving and monitoring."""

    project: str = Field(pattern=PROJECT_NAME, description="Project name: lower case, digits and `_`.")
    description: str = Field("", description="Free text.")
    storage_root: ProjectPath = Field(
        description="Where raylane keeps offline tables, the Feast repo, MLflow, checkpoints and reports;"
        " `.raylane/<project>` next to the config when omitted.",
        json_schema_extra={"x-default": ".raylane/<project>"},  # filled in by _default_storage_root
    )
    data: DataConfig = Field(description="Raw sources and labels.")
    entity: EntityConfig = Field(description="The entity.")
    features: FeaturesConfig = Field(description="Feature views.")
    model: ModelConfig = Field(description="Model.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training.")
    tune: TuneConfig = Field(default_factory=TuneConfig, description="Sweeps.")
    registry: RegistryConfig = Field(default_factory=RegistryConfig, description="Registry and promotion.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="Serving.")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="Monitoring.")
    batch: BatchConfig = Field(default_factory=BatchConfig, description="Batch inference (`raylane predict`).")
    backends: BackendsConfig = Field(default_factory=BackendsConfig, description="Backends.")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Clusters elsewhere (rendered).")
    jobs: dict[Annotated[str, StringConstraints(pattern=PROJECT_NAME)], ProjectJob] = Field(
        default_factory=dict,
        description="The project's own job scripts by name, submitted like raylane's with"
        " `raylane job submit CONFIG <name>` (only those declared here run).",
    )
    _base_dir: Path | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _default_storage_root(cls, data: Any) -> Any:
        if isinstance(data, dict) and "storage_root" not in data and isinstance(data.get("project"), str):
            data = {**data, "storage_root": f".raylane/{data['project']}"}
        return data

    @model_validator(mode="after")
    def _cross_check(self) -> ProjectConfig:
        # One rule group at a time, in this order: the first problem found is the one reported.
        self._check_sources()
        self._check_metric()
        self._check_space()
        self._check_labels()
        self._check_views()
        self._check_monitor()
        return self

    def _check_monitor(self) -> None:
        """A share of authenticated traffic needs a key to authenticate with."""
        if self.monitor.triggers.min_authenticated_share is not None and not self.serve.auth.enabled:
            raise ValueError(
                "monitor.triggers.min_authenticated_share: serve.auth has no API key, so no request is"
                " authenticated and drift could never count; set serve.auth.api_key_env or"
                " serve.auth.api_key_file (or remove min_authenticated_share)"
            )

    def _check_sources(self) -> None:
        """Source names are unique; every source has the entity key and lists its timestamp apart."""
        names = [s.name for s in self.data.sources]
        if dups := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"data.sources: duplicate source name(s) {dups}")
        key = self.entity.join_key
        for i, s in enumerate(self.data.sources):
            if key not in s.columns:
                raise ValueError(
                    f"data.sources.{i} ({s.name}): the entity key `{key}` is not among its columns;"
                    f" add `{key}: {self.entity.dtype}`"
                )
            if s.timestamp_column in s.columns:
                raise ValueError(
                    f"data.sources.{i} ({s.name}): list the timestamp column `{s.timestamp_column}`"
                    " in `timestamp_column` only, not in `columns`"
                )

    def _check_metric(self) -> None:
        """The promotion metric is one of the task's."""
        metric = self.registry.promotion.metric
        if metric is not None and metric not in TASK_METRICS[self.model.task]:
            raise ValueError(
                f"registry.promotion.metric: {metric!r} is not a {self.model.task} metric;"
                f" one of {list(TASK_METRICS[self.model.task])}"
            )

    def _check_labels(self) -> None:
        """The labels come from a known source and one of its columns."""
        names = [s.name for s in self.data.sources]
        labels = self.data.labels
        if labels.source not in names:
            raise ValueError(f"data.labels.source: unknown source {labels.source!r}; one of {names}")
        if labels.column not in self.data.source(labels.source).columns:
            raise ValueError(f"data.labels.column: {labels.column!r} is not a column of source {labels.source!r}")

    def _check_views(self) -> None:
        """Each view reads a known, non-label source; its features are columns of it, not the key,
        and no feature name is in two views."""
        names = [s.name for s in self.data.sources]
        seen: dict[str, str] = {}
        for i, v in enumerate(self.features.views):
            if v.source not in names:
                raise ValueError(f"features.views.{i}.source: unknown source {v.source!r}; one of {names}")
            if v.source == self.data.labels.source:
                raise ValueError(f"features.views.{i}.source: {v.source!r} is the label source")
            self._check_view_columns(i, v)
            for f in self.view_features(v):
                if f in ("x_num", "x_cat", "y") and self.data.source(v.source).columns[f].is_text:
                    raise ValueError(
                        f"features.views.{i}: text feature {f!r} would share its name with a batch key"
                        " (x_num, x_cat, y); rename the column"
                    )
                if f in seen:
                    raise ValueError(
                        f"features.views.{i}: feature {f!r} is also in view {seen[f]!r};"
                        " feature names must be unique across views"
                    )
                seen[f] = v.name

    def _check_view_columns(self, i: int, v: FeatureViewConfig) -> None:
        cols = self.data.source(v.source).columns
        for f in v.features or []:
            if f not in cols:
                raise ValueError(
                    f"features.views.{i}.features: {f!r} is not a column of source {v.source!r};"
                    f" columns: {sorted(cols)}"
                )
            if f == self.entity.join_key:
                raise ValueError(f"features.views.{i}.features: {f!r} is the entity key")

    def _check_space(self) -> None:
        """Every searched parameter exists, may be searched, and every bound or candidate is valid for it."""
        searchable = [f"{section}.{name}" for section, names in SEARCHABLE.items() for name in names]
        for key, dim in self.tune.space.items():
            where = f"tune.space.{key}"
            if key.startswith("model.params."):
                if not self.model.entrypoint:
                    raise ValueError(
                        f"{where}: `model.params.*` are an entrypoint model's arguments; the built-in MLP's"
                        f" searchable parameters are: {searchable}"
                    )
                continue  # checked against the factory's signature when the entrypoint is imported
            section, _, name = key.partition(".")
            section_model: BaseModel | None = getattr(self, section, None) if section in SEARCHABLE else None
            if section_model is None or name not in type(section_model).model_fields:
                raise ValueError(
                    f"{where}: `{key}` is not a parameter of the model or of training; searchable: {searchable}"
                )
            if name not in SEARCHABLE[section]:
                raise ValueError(
                    f"{where}: `{key}` cannot be searched (it is fixed for a whole sweep); searchable: {searchable}"
                )
            annotation = type(section_model).model_fields[name].annotation
            if dim.type in ("uniform", "loguniform") and annotation is int:
                raise ValueError(f"{where}: `{key}` takes integers; use `randint` (or `choice`) instead of {dim.type}")
            if dim.type in ("choice", "grid"):
                candidates = list(dim.values or [])
            elif dim.type == "randint":
                candidates = [int(dim.low or 0), int(dim.high or 0) - 1]
            else:
                candidates = [dim.low, dim.high]
            for value in candidates:
                _check_value(section_model, key, value, where)
        self._check_points()

    def _check_points(self) -> None:
        """Every value of ``tune.points_to_evaluate`` is a point of its dimension and valid for it."""
        for i, point in enumerate(self.tune.points_to_evaluate):
            for key, value in point.items():
                where = f"tune.points_to_evaluate.{i}.{key}"
                problem = self.tune.space[key].outside(value)
                if problem:
                    raise ValueError(f"{where}: {value!r} {problem}")
                section = key.partition(".")[0]
                if section in SEARCHABLE and not key.startswith("model.params."):
                    _check_value(getattr(self, section), key, value, where)

    # ----- derived values (one place, so stages never recompute them differently)

    def view_features(self, view: FeatureViewConfig) -> list[str]:
        """The feature columns of a view, in a stable order."""
        if view.features is not None:
            return list(view.features)
        cols = self.data.source(view.source).columns
        return [c for c in cols if c != self.entity.join_key]

    def feature_dtypes(self) -> dict[str, ColumnType]:
        """Every served feature and its logical type, in view order."""
        return {f: spec.dtype for f, spec in self.feature_specs().items()}

    def feature_specs(self) -> dict[str, ColumnSpec]:
        """Every served feature and its column spec (type, and `kind: text` …), in view order."""
        out: dict[str, ColumnSpec] = {}
        for v in self.features.views:
            cols = self.data.source(v.source).columns
            for f in self.view_features(v):
                out[f] = cols[f]
        return out

    def text_features(self) -> list[str]:
        """The features declared ``kind: text``."""
        return [f for f, spec in self.feature_specs().items() if spec.is_text]

    @property
    def base_dir(self) -> Path | None:
        """The folder of the config file this was loaded from (``None`` when built in code)."""
        return self._base_dir

    def with_base_dir(self, base: Path | None) -> ProjectConfig:
        self._base_dir = base
        return self

    def __eq__(self, other: object) -> bool:
        # The same settings are the same config, wherever its file was read from.
        return isinstance(other, ProjectConfig) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    @property
    def feature_service_name(self) -> str:
        return self.features.service or f"{self.project}_model"

    @property
    def model_name(self) -> str:
        return self.registry.model_name or self.project

    def private_storage(self) -> Path:
        """The storage root, made 0700 (only its owner reads models, logs, the MLflow database and
        the request-id secret); an existing one that others can enter, and is ours, is tightened."""
        root = self.storage_root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = root.stat()
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            root.chmod(0o700)
        return root

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.backends.mlflow.tracking_uri or f"sqlite:///{self.storage_root / 'mlflow.db'}"

    @property
    def mlflow_experiment(self) -> str:
        return self.backends.mlflow.experiment or self.project

    def fingerprint(self) -> str:
        """SHA-256 of the resolved config: equal configs give equal hashes."""
        doc = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()

    def to_yaml(self) -> str:
        """The resolved config, defaults included, as YAML."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _check_value(section_model: BaseModel, key: str, value: Any, where: str) -> None:
    """``value`` is a valid ``key`` (``section.name``) by its section's own checks."""
    try:
        type(section_model).model_validate({**section_model.model_dump(), key.partition(".")[2]: value})
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise ValueError(f"{where}: {value!r} is not a valid `{key}`: {problem}") from None
