"""The project config: one typed YAML document per project.

`load_config` is the only way in. It reads the YAML, expands ``${ENV}`` references, applies
``RAYLANE__A__B=value`` environment overrides and then ``--set a.b=value`` overrides, and validates
the result against `ProjectConfig`. Relative paths resolve against the config file's folder.
Any problem raises `ConfigError` naming the file, the field path, the bad value and the fix.

The pydantic models below are the single source of truth: the JSON Schema (`raylane config
schema`), the docs' config reference and the defaults shown by `raylane config show` are all
generated from them.

Example::

    cfg = load_config("configs/churn.yaml", ["train.epochs=3"])
    cfg.train.epochs  # 3
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from raylane.errors import ConfigError

__all__ = [
    "ColumnSpec",
    "ProjectConfig",
    "config_reference",
    "config_schema",
    "load_config",
]

ENV_PREFIX = "RAYLANE__"
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
_PROJECT = r"^[a-z][a-z0-9_]*$"


# --------------------------------------------------------------------------- field types


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    value = value.expanduser()
    base = (info.context or {}).get("base_dir")
    if not value.is_absolute() and base is not None:
        value = Path(base) / value
    return Path(os.path.normpath(value)) if value.is_absolute() else value


ProjectPath = Annotated[Path, AfterValidator(_resolve_path)]
"""A path; relative ones resolve against the folder of the config file."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_duration(value: Any) -> Any:
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]
"""A duration: ``30d``, ``12h``, ``15m``, ``45s``, ``250ms``, seconds as a number, or ISO 8601."""

ColumnType = Literal["int64", "float64", "string", "bool", "timestamp"]

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "log_loss", "accuracy"),
    "multiclass": ("macro_f1", "accuracy", "log_loss"),
    "regression": ("rmse", "mae"),
}
"""Holdout metrics per task; the first is the default for early stopping and the gate."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# --------------------------------------------------------------------------- data


class ColumnSpec(_Model):
    """A column a raw source must have."""

    dtype: ColumnType = Field(
        description="Logical type. Integers widen to float64; int64 columns with nulls are accepted."
    )
    max_null_fraction: float = Field(
        1.0, ge=0.0, le=1.0, description="Ingestion fails when a larger fraction of rows is null."
    )
    description: str = Field("", description="Free text, copied into the Feast field's description.")


def _column_shorthand(value: Any) -> Any:
    # ``plan: string`` is shorthand for ``plan: {dtype: string}``.
    if isinstance(value, Mapping):
        return {k: {"dtype": v} if isinstance(v, str) else v for k, v in value.items()}
    return value


class SourceConfig(_Model):
    """A raw data source: a parquet or csv file, a folder of them, or a glob."""

    name: str = Field(pattern=_IDENT, description="Name used by feature views and labels to refer to it.")
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


class LabelsConfig(_Model):
    """Where the training labels come from."""

    source: str = Field(description="Name of the source (in `data.sources`) that holds the labels.")
    column: str = Field(description="The label column of that source.")


class DataConfig(_Model):
    """Raw sources read by ingestion (Ray Data) and written as the offline tables Feast reads."""

    sources: list[SourceConfig] = Field(min_length=1, description="Raw sources, feature sources and labels.")
    labels: LabelsConfig = Field(description="The label table: entity key, label time and label.")

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)


# --------------------------------------------------------------------------- features


class EntityConfig(_Model):
    """The entity that features describe and predictions are made for."""

    name: str = Field(pattern=_IDENT, description="Feast entity name.")
    join_key: str = Field(pattern=_IDENT, description="Key column present in every source.")
    dtype: Literal["int64", "string"] = Field("int64", description="Type of the key.")
    description: str = Field("", description="Free text for the Feast entity.")


class FeatureViewConfig(_Model):
    """A Feast feature view over one source."""

    name: str = Field(pattern=_IDENT, description="Feast feature view name.")
    source: str = Field(description="Name of the source (in `data.sources`) it reads.")
    ttl: Duration = Field(description="How long a feature row stays valid: an as-of join ignores rows older than this.")
    features: list[str] | None = Field(
        None, description="Columns of the source served as features; all but the join key when omitted."
    )
    online: bool = Field(True, description="Materialize into the online store for serving.")
    tags: dict[str, str] = Field(default_factory=dict, description="Feast tags.")


class FeaturesConfig(_Model):
    """Feature views and the feature service the model reads."""

    views: list[FeatureViewConfig] = Field(min_length=1, description="Feature views.")
    service: str | None = Field(
        None, pattern=_IDENT, description="Feast feature service name; `<project>_model` when omitted."
    )


# --------------------------------------------------------------------------- model / train / tune


class ModelConfig(_Model):
    """The model: task and shape. One torch MLP for tabular features."""

    task: Literal["binary", "multiclass", "regression"] = Field(description="Drives loss, output and metrics.")
    num_classes: int | None = Field(None, ge=2, description="Classes for `multiclass`; inferred when omitted.")
    hidden_layers: list[int] = Field(default_factory=lambda: [64, 32], description="Hidden layer widths.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")
    activation: Literal["relu", "gelu", "tanh"] = Field("relu", description="Hidden activation.")
    embedding_dim: int = Field(4, ge=1, description="Embedding width per categorical feature.")
    max_categories: int = Field(
        50, ge=1, description="Most frequent categories kept per column; others share the unseen bucket."
    )


class ValidationSplit(_Model):
    """How the holdout is cut from the training set."""

    split: Literal["time", "random"] = Field("time", description="`time`: newest rows validate; `random`.")
    fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Fraction of rows held out.")


class EarlyStopping(_Model):
    """Stop when the validation metric stops improving."""

    patience: int = Field(3, ge=1, description="Epochs without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0.0, description="Smallest change that counts as improvement.")


class TrainConfig(_Model):
    """Ray Train (TorchTrainer) settings."""

    num_workers: int = Field(1, ge=1, description="Data-parallel workers.")
    use_gpu: bool = Field(False, description="One GPU per worker. Fails fast when the cluster has none.")
    resources_per_worker: dict[str, float] = Field(
        default_factory=lambda: {"CPU": 1.0}, description="Ray resources each worker reserves."
    )
    epochs: int = Field(10, ge=1, description="Maximum epochs.")
    batch_size: int = Field(256, ge=1, description="Batch size per worker.")
    learning_rate: float = Field(1e-3, gt=0.0, description="Optimizer learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 weight decay.")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adamw", description="Optimizer.")
    seed: int = Field(0, description="Seed for data splits, initialisation and shuffling.")
    validation: ValidationSplit = Field(default_factory=ValidationSplit, description="Holdout split.")
    early_stopping: EarlyStopping | None = Field(
        default_factory=EarlyStopping, description="Early stopping; null disables it."
    )
    max_failures: int = Field(1, ge=0, description="Worker failures survived by resuming from a checkpoint.")
    cache_data: bool = Field(
        True,
        description="Keep each worker's data shard in memory as tensors after the first read (fast epochs,"
        " reshuffled every epoch); turn off for shards larger than a worker's memory (streams from Ray Data).",
    )
    checkpoints_to_keep: int = Field(2, ge=1, description="Checkpoints kept per run.")


class ParamSpace(_Model):
    """One dimension of a search space."""

    type: Literal["uniform", "loguniform", "choice", "randint", "grid"] = Field(description="Distribution.")
    low: float | None = Field(None, description="Lower bound (`uniform`, `loguniform`, `randint`).")
    high: float | None = Field(None, description="Upper bound (exclusive for `randint`).")
    values: list[Any] | None = Field(None, description="Candidates (`choice`, `grid`).")

    @model_validator(mode="after")
    def _check(self) -> ParamSpace:
        if self.type in ("choice", "grid"):
            if not self.values:
                raise ValueError(f"`{self.type}` needs a non-empty `values` list")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"`{self.type}` needs both `low` and `high`")
            if self.low >= self.high:
                raise ValueError(f"`low` ({self.low}) must be below `high` ({self.high})")
            if self.type == "loguniform" and self.low <= 0:
                raise ValueError(f"`loguniform` needs `low` > 0, got {self.low}")
        return self


class SchedulerConfig(_Model):
    """Trial scheduler."""

    type: Literal["asha", "fifo"] = Field("asha", description="`asha` stops weak trials early; `fifo` never.")
    max_t: int = Field(10, ge=1, description="Most epochs a trial may run.")
    grace_period: int = Field(2, ge=1, description="Epochs before a trial may be stopped.")
    reduction_factor: float = Field(2.0, gt=1.0, description="ASHA's halving rate.")

    @model_validator(mode="after")
    def _check(self) -> SchedulerConfig:
        if self.grace_period > self.max_t:
            raise ValueError(f"`grace_period` ({self.grace_period}) must not exceed `max_t` ({self.max_t})")
        return self


class TuneConfig(_Model):
    """Ray Tune sweep settings; each trial is a Ray Train run."""

    num_samples: int = Field(8, ge=1, description="Trials (per grid point when `grid` is used).")
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="Trials at once; sized to the cluster's CPUs when omitted."
    )
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig, description="Early stopping.")
    space: dict[str, ParamSpace] = Field(
        default_factory=dict,
        description="Search space: `model.<field>` or `train.<field>` → a distribution. Every trial trains"
        " `scheduler.max_t` epochs at most (not `train.epochs`).",
    )


SEARCHABLE: dict[str, tuple[str, ...]] = {
    "model": ("hidden_layers", "dropout", "activation", "embedding_dim"),
    "train": ("learning_rate", "weight_decay", "optimizer", "batch_size", "seed"),
}
"""Parameters a sweep may vary. The others are fixed per sweep: the data and its preprocessing
(``model.max_categories``) are prepared once for all trials, the trial's resources
(``train.num_workers`` …) size the sweep's concurrency, and ``tune.scheduler.max_t`` bounds epochs."""


# --------------------------------------------------------------------------- registry / serve / monitor


class PromotionConfig(_Model):
    """The gate a challenger must pass to become champion."""

    metric: str | None = Field(None, description="Holdout metric; the task's default when omitted.")
    min_improvement: float = Field(0.0, ge=0.0, description="How much better than the champion the challenger must be.")
    floor: float | None = Field(None, description="The first model is promoted only if its metric clears this.")


class RegistryConfig(_Model):
    """MLflow model registry."""

    model_name: str | None = Field(None, description="Registered model name; the project name when omitted.")
    promotion: PromotionConfig = Field(default_factory=PromotionConfig, description="Promotion gate.")


class AutoscalingConfig(_Model):
    """Ray Serve autoscaling of the model deployment."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas.")
    max_replicas: int = Field(2, ge=1, description="Most replicas.")
    target_ongoing_requests: float = Field(8, gt=0, description="Requests per replica the autoscaler aims at.")
    upscale_delay_s: float = Field(5.0, ge=0, description="Seconds above target before scaling up.")
    downscale_delay_s: float = Field(30.0, ge=0, description="Seconds below target before scaling down.")
    look_back_period_s: float = Field(30.0, gt=0, description="Seconds of load the autoscaler averages over.")

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"`min_replicas` ({self.min_replicas}) must not exceed `max_replicas` ({self.max_replicas})"
            )
        return self


class BatchingConfig(_Model):
    """`@serve.batch` settings."""

    enabled: bool = Field(True, description="Batch entities across requests; off scores each request alone.")
    max_batch_size: int = Field(32, ge=1, description="Most entities scored together.")
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        description="Longest wait to fill a batch; 0 batches what queued while the last batch ran (no added latency).",
    )


class InferenceLogConfig(_Model):
    """The inference log: every prediction and every feedback label, as parquet under the storage root."""

    enabled: bool = Field(True, description="Write the inference log.")
    flush_rows: int = Field(1000, ge=1, description="A replica writes a file after this many rows…")
    flush_seconds: float = Field(2.0, gt=0, description="…or after this long.")


class AuthConfig(_Model):
    """API key required on /predict and /feedback; none when both fields are null."""

    api_key_env: str | None = Field(None, description="Environment variable that holds the API key.")
    api_key_file: ProjectPath | None = Field(None, description="File that holds the API key.")


class ServeConfig(_Model):
    """Ray Serve application."""

    host: str = Field("127.0.0.1", description="HTTP bind address.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    route_prefix: str = Field("/", description="Route prefix of the application.")
    max_ongoing_requests: int = Field(64, ge=1, description="Per replica; Ray's default of 5 throttles batching.")
    max_queued_requests: int = Field(256, ge=1, description="Beyond this, 503 with Retry-After.")
    num_cpus_per_replica: float = Field(0.5, gt=0, description="CPUs each model replica reserves.")
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig, description="Autoscaling.")
    batching: BatchingConfig = Field(default_factory=BatchingConfig, description="Batching.")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API key authentication.")
    max_body_bytes: int = Field(1 << 20, ge=1, description="Larger request bodies get 413.")
    max_entities_per_request: int = Field(256, ge=1, description="Most entities in one /predict.")
    request_timeout_s: float = Field(10.0, gt=0, description="Requests running longer get 504.")
    retry_after_s: float = Field(1.0, ge=0, description="`Retry-After` of a 503 answered under backpressure.")
    model_alias: str = Field("champion", description="The registry alias served; replicas follow it when it moves.")
    model_poll_s: float = Field(2.0, gt=0, description="How often replicas check where the alias points.")
    unknown_entity: Literal["reject", "impute"] = Field(
        "reject",
        description="An entity the online store has no features for: `reject` answers 404 naming it;"
        " `impute` predicts with the features missing (as training treated nulls).",
    )
    inference_log: InferenceLogConfig = Field(default_factory=InferenceLogConfig, description="Inference log.")


class DriftConfig(_Model):
    """Drift detection against the champion's reference profile (whylogs' algorithms)."""

    numeric: Literal["ks", "hellinger"] = Field("ks", description="Algorithm for numeric columns.")
    categorical: Literal["chi_square"] = Field("chi_square", description="Algorithm for categorical columns.")
    threshold: float = Field(
        0.01,
        gt=0,
        description="A column drifts when its p-value (KS, chi-square) is below this, or its Hellinger"
        " distance above it.",
    )


class TriggersConfig(_Model):
    """When the monitor schedules a retrain."""

    drifted_features: int | None = Field(3, ge=1, description="Retrain when at least this many features drift.")
    live_metric_below: float | None = Field(
        None,
        description="Retrain when the live metric (the gate's metric on labelled predictions) is worse than this.",
    )
    every: Duration | None = Field(None, description="Retrain on a schedule (continuous training), e.g. 24h.")


class MonitorConfig(_Model):
    """The monitor actor: windows, drift, quality and retrain policy."""

    enabled: bool = Field(True, description="Profile live traffic; `raylane serve deploy` starts the monitor.")
    window_rows: int | None = Field(1000, ge=1, description="Close a window after this many rows.")
    window_seconds: float | None = Field(None, gt=0, description="Close a window after this long (rows or not).")
    flush_rows: int = Field(
        1000,
        ge=1,
        description="Replicas send a profile after this many rows (a whylogs profile costs about 80 ms of"
        " replica CPU whatever its size: fewer, larger profiles cost serving less)…",
    )
    flush_seconds: float = Field(5.0, gt=0, description="…or after this long.")
    drift: DriftConfig = Field(default_factory=DriftConfig, description="Drift detection.")
    max_null_fraction: float = Field(
        0.5, ge=0, le=1, description="Quality: most nulls a feature may have (a source column's own limit wins)."
    )
    min_labels: int = Field(30, ge=1, description="Labelled predictions a window needs for a live metric.")
    triggers: TriggersConfig = Field(default_factory=TriggersConfig, description="Retrain triggers.")
    cooldown: Duration = Field(timedelta(minutes=30), description="Least time between two retrains.")
    job_address: str | None = Field(
        None,
        description="The Ray job API retrains are submitted to (http://host:8265); the cluster the monitor"
        " runs on when omitted.",
    )
    max_pending_profiles: int = Field(
        1000, ge=1, description="Profiles a replica keeps while the monitor cannot be reached (then drops the oldest)."
    )

    @model_validator(mode="after")
    def _a_window_closes(self) -> MonitorConfig:
        if self.window_rows is None and self.window_seconds is None:
            raise ValueError("set monitor.window_rows or monitor.window_seconds: a window must close somehow")
        return self


# --------------------------------------------------------------------------- backends


class RayBackend(_Model):
    """Where Ray runs. `local` starts one for this process; anything else joins a cluster."""

    address: str = Field(
        "local",
        description="`local` (embedded), `auto`, `host:port`, `ray://host:10001`, or `http://host:8265`"
        " (the job API; drivers run there as jobs).",
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the embedded Ray; the machine's when omitted.")
    num_gpus: int | None = Field(None, ge=0, description="GPUs of the embedded Ray; detected when omitted.")
    namespace: str = Field("raylane", description="Ray namespace for named actors.")
    dashboard: bool = Field(True, description="Start the dashboard (needed by the job API and state API).")
    auth_token_file: ProjectPath | None = Field(
        None, description="Token file; `RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token` when omitted."
    )


class MlflowBackend(_Model):
    """MLflow tracking and registry."""

    tracking_uri: str | None = Field(
        None, description="Tracking URI; SQLite under the storage root when omitted (`sqlite:///…/mlflow.db`)."
    )
    experiment: str | None = Field(None, description="Experiment name; the project name when omitted.")


class FileOfflineStore(_Model):
    """Parquet files read by Feast's file (dask) offline store."""

    type: Literal["file"] = Field("file", description="Feast's file offline store.")


class RayOfflineStore(_Model):
    """Feast's Ray offline store, run on raylane's Ray cluster.

    Materialization uses Feast's local compute engine over it: Feast 0.67's Ray compute engine
    (``batch_engine: ray.engine``) finished without writing any row to the online store here.
    """

    type: Literal["ray"] = Field(description="Feast's Ray offline store.")


class SqliteOnlineStore(_Model):
    """Feast's SQLite online store (embedded)."""

    type: Literal["sqlite"] = Field("sqlite", description="Feast's SQLite online store.")
    path: ProjectPath | None = Field(None, description="Database file; under the storage root when omitted.")


class RedisOnlineStore(_Model):
    """Feast's Redis online store."""

    type: Literal["redis"] = Field(description="Feast's Redis online store.")
    connection_string: str = Field(
        "127.0.0.1:6379", description="`host:port[,db=N][,password=…][,ssl=true]`, as Feast expects."
    )
    key_ttl_seconds: int | None = Field(None, ge=1, description="Expire online rows after this long.")


class FeastBackend(_Model):
    """Feast stores."""

    offline_store: FileOfflineStore | RayOfflineStore = Field(
        default_factory=FileOfflineStore, discriminator="type", description="Offline store (`file` or `ray`)."
    )
    online_store: SqliteOnlineStore | RedisOnlineStore = Field(
        default_factory=SqliteOnlineStore, discriminator="type", description="Online store (`sqlite`, `redis`)."
    )


class BackendsConfig(_Model):
    """Services raylane talks to. Embedded by default; scale out by config alone."""

    ray: RayBackend = Field(default_factory=RayBackend, description="Ray cluster.")
    mlflow: MlflowBackend = Field(default_factory=MlflowBackend, description="MLflow.")
    feast: FeastBackend = Field(default_factory=FeastBackend, description="Feast.")


# --------------------------------------------------------------------------- clusters (rendered manifests)

_K8S_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti)?$"
_K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class NodeTypeConfig(_Model):
    """One kind of node: its size, and (workers) how many the autoscaler may run."""

    cpus: int = Field(ge=1, description="CPUs Ray schedules on one node.")
    memory: str = Field(pattern=_K8S_QUANTITY, description="Memory of one node, Kubernetes units (`16Gi`).")
    gpus: int = Field(0, ge=0, description="GPUs of one node.")
    min_workers: int = Field(0, ge=0, description="Fewest nodes of this kind (workers; the head is one).")
    max_workers: int = Field(0, ge=0, description="Most nodes of this kind the autoscaler starts (workers).")
    instance_type: str = Field(description="The cloud instance type (cluster launcher).")

    @model_validator(mode="after")
    def _bounds(self) -> NodeTypeConfig:
        if self.min_workers > self.max_workers:
            raise ValueError(f"min_workers {self.min_workers} is above max_workers {self.max_workers}")
        return self


class KubeRayConfig(_Model):
    """KubeRay manifests (`raylane cluster render kuberay`)."""

    namespace: str = Field("raylane", pattern=_K8S_NAME, description="Kubernetes namespace.")
    image: str = Field(
        "raylane:0.1.0", description="Image with Ray, torch and raylane (`clusters/Dockerfile` builds it)."
    )
    gpu_image: str = Field("raylane:0.1.0-gpu", description="Image of the GPU worker group (CUDA torch).")
    storage_claim: str = Field(
        "raylane-storage",
        pattern=_K8S_NAME,
        description="A ReadWriteMany PersistentVolumeClaim mounted on every pod: data, the storage root.",
    )
    mount_path: str = Field("/mnt/raylane", description="Where the claim is mounted in the pods.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment of every pod; the config's `${VAR}`s point its paths into the mount.",
    )
    job_ttl_seconds: int = Field(3600, ge=0, description="How long a finished RayJob's cluster is kept.")
    job_deadline_seconds: int = Field(
        6 * 3600, ge=60, description="A RayJob running longer than this is failed (activeDeadlineSeconds)."
    )


class LauncherConfig(_Model):
    """The Ray cluster launcher (`ray up`) config (`raylane cluster render launcher`)."""

    provider: Literal["aws"] = Field("aws", description="Cloud provider.")
    region: str = Field("us-west-2", description="Cloud region.")
    ssh_user: str = Field("ubuntu", description="SSH user of the machine image.")
    idle_timeout_minutes: int = Field(5, ge=1, description="Idle workers are removed after this long.")


class HeadNodeConfig(NodeTypeConfig):
    """The head node."""

    cpus: int = Field(4, ge=1, description="CPUs Ray schedules on the head (drivers, Serve controller).")
    memory: str = Field("16Gi", pattern=_K8S_QUANTITY, description="Memory of the head, Kubernetes units.")
    instance_type: str = Field("m5.xlarge", description="The cloud instance type (cluster launcher).")


class CpuWorkersConfig(NodeTypeConfig):
    """CPU worker nodes."""

    cpus: int = Field(8, ge=1, description="CPUs of one worker.")
    memory: str = Field("32Gi", pattern=_K8S_QUANTITY, description="Memory of one worker, Kubernetes units.")
    min_workers: int = Field(1, ge=0, description="Fewest CPU workers.")
    max_workers: int = Field(4, ge=0, description="Most CPU workers the autoscaler starts.")
    instance_type: str = Field("m5.2xlarge", description="The cloud instance type (cluster launcher).")


class GpuWorkersConfig(NodeTypeConfig):
    """GPU worker nodes; none when ``max_workers`` is 0."""

    cpus: int = Field(8, ge=1, description="CPUs of one worker.")
    memory: str = Field("32Gi", pattern=_K8S_QUANTITY, description="Memory of one worker, Kubernetes units.")
    gpus: int = Field(1, ge=1, description="GPUs of one worker.")
    max_workers: int = Field(2, ge=0, description="Most GPU workers the autoscaler starts (0: no GPU group).")
    instance_type: str = Field("g5.2xlarge", description="The cloud instance type (cluster launcher).")


class ClusterConfig(_Model):
    """What `raylane cluster render` writes: node types, images and set-up for a cluster elsewhere."""

    head: HeadNodeConfig = Field(
        default_factory=HeadNodeConfig, description="The head node (job drivers, the Serve controller)."
    )
    cpu_workers: CpuWorkersConfig = Field(
        default_factory=CpuWorkersConfig, description="CPU worker nodes: training, Ray Data, Serve replicas."
    )
    gpu_workers: GpuWorkersConfig = Field(
        default_factory=GpuWorkersConfig, description="GPU worker nodes (started when a job asks for GPUs)."
    )
    kuberay: KubeRayConfig = Field(default_factory=KubeRayConfig, description="KubeRay.")
    launcher: LauncherConfig = Field(default_factory=LauncherConfig, description="Ray cluster launcher.")


# --------------------------------------------------------------------------- the project


class ProjectConfig(_Model):
    """A raylane project: data, features, model, training, serving and monitoring."""

    project: str = Field(pattern=_PROJECT, description="Project name: lower case, digits and `_`.")
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
    backends: BackendsConfig = Field(default_factory=BackendsConfig, description="Backends.")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Clusters elsewhere (rendered).")

    @model_validator(mode="before")
    @classmethod
    def _default_storage_root(cls, data: Any) -> Any:
        if isinstance(data, dict) and "storage_root" not in data and isinstance(data.get("project"), str):
            data = {**data, "storage_root": f".raylane/{data['project']}"}
        return data

    @model_validator(mode="after")
    def _cross_check(self) -> ProjectConfig:
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
        metric = self.registry.promotion.metric
        if metric is not None and metric not in TASK_METRICS[self.model.task]:
            raise ValueError(
                f"registry.promotion.metric: {metric!r} is not a {self.model.task} metric;"
                f" one of {list(TASK_METRICS[self.model.task])}"
            )
        self._check_space()
        labels = self.data.labels
        if labels.source not in names:
            raise ValueError(f"data.labels.source: unknown source {labels.source!r}; one of {names}")
        if labels.column not in self.data.source(labels.source).columns:
            raise ValueError(f"data.labels.column: {labels.column!r} is not a column of source {labels.source!r}")
        seen: dict[str, str] = {}
        for i, v in enumerate(self.features.views):
            if v.source not in names:
                raise ValueError(f"features.views.{i}.source: unknown source {v.source!r}; one of {names}")
            if v.source == labels.source:
                raise ValueError(f"features.views.{i}.source: {v.source!r} is the label source")
            cols = self.data.source(v.source).columns
            for f in v.features or []:
                if f not in cols:
                    raise ValueError(
                        f"features.views.{i}.features: {f!r} is not a column of source {v.source!r};"
                        f" columns: {sorted(cols)}"
                    )
                if f == key:
                    raise ValueError(f"features.views.{i}.features: {f!r} is the entity key")
            for f in self.view_features(v):
                if f in seen:
                    raise ValueError(
                        f"features.views.{i}: feature {f!r} is also in view {seen[f]!r};"
                        " feature names must be unique across views"
                    )
                seen[f] = v.name
        return self

    def _check_space(self) -> None:
        """Every searched parameter exists, may be searched, and every bound or candidate is valid for it."""
        searchable = [f"{section}.{name}" for section, names in SEARCHABLE.items() for name in names]
        for key, dim in self.tune.space.items():
            where = f"tune.space.{key}"
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
                try:
                    type(section_model).model_validate({**section_model.model_dump(), name: value})
                except ValidationError as exc:
                    problem = exc.errors()[0]["msg"]
                    raise ValueError(f"{where}: {value!r} is not a valid `{key}`: {problem}") from None

    # ----- derived values (one place, so stages never recompute them differently)

    def view_features(self, view: FeatureViewConfig) -> list[str]:
        """The feature columns of a view, in a stable order."""
        if view.features is not None:
            return list(view.features)
        cols = self.data.source(view.source).columns
        return [c for c in cols if c != self.entity.join_key]

    def feature_dtypes(self) -> dict[str, ColumnType]:
        """Every served feature and its logical type, in view order."""
        out: dict[str, ColumnType] = {}
        for v in self.features.views:
            cols = self.data.source(v.source).columns
            for f in self.view_features(v):
                out[f] = cols[f].dtype
        return out

    @property
    def feature_service_name(self) -> str:
        return self.features.service or f"{self.project}_model"

    @property
    def model_name(self) -> str:
        return self.registry.model_name or self.project

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


def config_schema() -> dict[str, Any]:
    """JSON Schema of the project config (for editors and the docs)."""
    schema = ProjectConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "raylane project config"
    return schema


def config_reference() -> str:
    """The config reference (Markdown), generated from the models: every field's path, type,
    default and description (``raylane config reference``; ``docs/config.md`` is its output)."""
    import types
    import typing

    from pydantic_core import PydanticUndefined

    def models_in(annotation: Any) -> list[type[BaseModel]]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]

    def type_name(annotation: Any) -> str:
        if isinstance(annotation, type):
            return {"timedelta": "duration", "Path": "path", "NoneType": "null"}.get(
                annotation.__name__, annotation.__name__
            )
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is Annotated:
            return type_name(args[0])
        if origin is Literal:
            return " \\| ".join(f"`{a}`" for a in args)
        if origin in (typing.Union, types.UnionType):
            return " \\| ".join(type_name(a) for a in args)
        if origin is not None:
            return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
        return str(annotation)

    def default(field: Any) -> str:
        extra = field.json_schema_extra
        if isinstance(extra, dict) and "x-default" in extra:  # a default derived from other fields
            return f"`{extra['x-default']}`"
        if field.default is not PydanticUndefined:
            value = field.default
        elif field.default_factory is not None:
            value = field.default_factory()
            if isinstance(value, BaseModel):
                return "—"
        else:
            return "**required**"
        if isinstance(value, timedelta):
            return f"`{int(value.total_seconds())}s`"
        return f"`{json.dumps(value, default=str)}`"

    out = [
        "# Config reference",
        "",
        "Generated from raylane's config models by `raylane config reference` (do not edit by hand).",
        "Every field can also be set with `--set a.b=value` or `RAYLANE__A__B=value`; `raylane config schema`",
        "prints the same as JSON Schema for editors.",
        "",
    ]
    seen: set[tuple[str, type[BaseModel]]] = set()

    def walk(model: type[BaseModel], prefix: str) -> None:
        if (prefix, model) in seen:
            return
        seen.add((prefix, model))
        title = prefix.rstrip(".") or "top level"
        doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out.extend([f"## `{title}`", "", doc, "", "| field | type | default | description |", "|---|---|---|---|"])
        nested: list[tuple[type[BaseModel], str]] = []
        for name, field in model.model_fields.items():
            annotation = field.annotation
            subs = models_in(annotation)
            origin = typing.get_origin(annotation)
            path = f"{prefix}{name}"
            if subs and origin is list:
                nested += [(m, f"{path}[].") for m in subs]
            elif subs and origin is dict:
                nested += [(m, f"{path}.<name>.") for m in subs]
            elif subs:
                nested += [(m, f"{path}.") for m in subs]
            shown = type_name(annotation) if not subs or origin in (list, dict) else "section"
            description = (field.description or "").replace("|", "\\|").replace("\n", " ")
            out.append(f"| `{path}` | {shown} | {default(field)} | {description} |")
        out.append("")
        for sub, sub_prefix in nested:
            walk(sub, sub_prefix)

    walk(ProjectConfig, "")
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- loading


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _expand_env(node: Any, env: Mapping[str, str], where: str, file: Path) -> Any:
    if isinstance(node, dict):
        return {k: _expand_env(v, env, f"{where}.{k}" if where else str(k), file) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, env, f"{where}.{i}", file) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{file}: {where}: environment variable ${{{name}}} is not set",
                fix=f"export {name}=… or write ${{{name}:-default}} in the config",
            )

        return _ENV_REF.sub(sub, node)
    return node


def _set_path(doc: dict[str, Any], dotted: str, value: Any, origin: str) -> None:
    parts = dotted.split(".")
    if not dotted or any(p == "" for p in parts):
        raise ConfigError(f"{origin}: {dotted!r} is not a field path", fix="write it as a.b.c=value")
    node: Any = doc
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(node, dict):
            # A key may itself hold dots (`tune.space.train.learning_rate.high`): the longest one present wins.
            for j in range(len(parts), i + 1, -1):
                if ".".join(parts[i:j]) in node:
                    part, i = ".".join(parts[i:j]), j - 1
                    break
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"{origin}: {'.'.join(parts[:i])} is a list of {len(node)}; {part!r} is not an index in it",
                    fix=f"use an index from 0 to {len(node) - 1}",
                )
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"{origin}: {'.'.join(parts[:i])} is a value, not a section", fix="check the field path")
        i += 1


def _parse_override(item: str, origin: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"{origin}: {item!r} has no '='", fix="write overrides as a.b.c=value")
    path, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path.strip(), value


def _did_you_mean(loc: tuple[int | str, ...], model: type[BaseModel]) -> str:
    # Walk the models along ``loc`` to find the fields that were allowed where the unknown key sits.
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        current = _model_of(field.annotation) if field is not None else None
    if current is None or not hasattr(current, "model_fields"):
        return ""
    allowed = list(current.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}allowed here: {', '.join(allowed)}"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _format_errors(exc: ValidationError, file: Path, overridden: set[str]) -> ConfigError:
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        origin = " (from an override)" if path in overridden else ""
        kind = err["type"]
        if kind == "extra_forbidden":
            hint = _did_you_mean(loc, ProjectConfig)
            lines.append(f"{path}: unknown field{origin}; remove it or fix its spelling ({hint})")
        elif kind == "missing":
            lines.append(f"{path}: required field is missing; add `{loc[-1]}`")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
            # Cross-field checks of the whole project raise at the top level and name their own field.
            lines.append(f"{msg}{shown}" if not loc else f"{path}: {msg}{shown}{origin}")
    body = "\n  ".join(lines)
    return ConfigError(
        f"{file}: invalid config\n  {body}",
        fix="correct the field(s) above; `raylane config schema` lists every field, its type and meaning",
    )


def load_config(
    path: str | os.PathLike[str],
    overrides: Iterable[str] = (),
    *,
    env: Mapping[str, str] | None = None,
) -> ProjectConfig:
    """Load, expand, override and validate a project config.

    Args:
        path: The YAML file.
        overrides: ``a.b.c=value`` strings, applied last; values parse as YAML scalars.
        env: Environment for ``${VAR}`` and ``RAYLANE__A__B`` overrides; ``os.environ`` when omitted.

    Raises:
        ConfigError: the file is missing or malformed, or a value is invalid.
    """
    env = os.environ if env is None else env
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"config file not found: {file}",
            fix="pass the path of a project YAML, e.g. configs/churn.yaml",
        )
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file}: not valid YAML{where}: {exc}", fix="fix the YAML syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text", fix="save the config as UTF-8") from None
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{file}: the top level must be a mapping of sections, got {type(doc).__name__}",
            fix="start from configs/churn.yaml",
        )
    doc = _expand_env(doc, env, "", file)
    overridden: set[str] = set()
    for name in sorted(k for k in env if k.startswith(ENV_PREFIX)):
        dotted = ".".join(p.lower() for p in name[len(ENV_PREFIX) :].split("__"))
        _, value = _parse_override(f"{dotted}={env[name]}", f"environment {name}")
        _set_path(doc, dotted, value, f"environment {name}")
        overridden.add(dotted)
    for item in overrides:
        dotted, value = _parse_override(item, f"--set {item}")
        _set_path(doc, dotted, value, f"--set {item}")
        overridden.add(dotted)
    try:
        return ProjectConfig.model_validate(doc, context={"base_dir": file.resolve().parent})
    except ValidationError as exc:
        raise _format_errors(exc, file, overridden) from None
