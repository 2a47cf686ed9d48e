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

Where things live: `_base` (shared field types: project paths, durations, column types, the strict
base model), `data` (sources, labels, entity, feature views), `training` (model, train, tune,
registry), `serving` (serve and monitor), `backends` (Ray, MLflow, Feast; rendered clusters),
`project` (`ProjectConfig` and its cross-section checks), `loading` (`load_config`) and
`reference` (`config_schema`, `config_reference`).
"""

from raylane.config._base import TASK_METRICS, ColumnType, Duration, ProjectPath
from raylane.config.backends import (
    BackendsConfig,
    ClusterConfig,
    CpuWorkersConfig,
    DuckdbOfflineStore,
    FeastBackend,
    FileOfflineStore,
    GpuWorkersConfig,
    HeadNodeConfig,
    JobResources,
    KubeRayConfig,
    LauncherConfig,
    MlflowBackend,
    NodeTypeConfig,
    ProjectJob,
    RayBackend,
    RayOfflineStore,
    RedisOnlineStore,
    SqliteOnlineStore,
)
from raylane.config.data import (
    ColumnSpec,
    DataConfig,
    EntityConfig,
    FeaturesConfig,
    FeatureViewConfig,
    LabelsConfig,
    SourceConfig,
)
from raylane.config.loading import ENV_PREFIX, load_config
from raylane.config.project import ProjectConfig
from raylane.config.reference import config_reference, config_schema
from raylane.config.serving import (
    AuthConfig,
    AutoscalingConfig,
    BatchConfig,
    BatchingConfig,
    DriftConfig,
    InferenceLogConfig,
    MonitorConfig,
    ServeConfig,
    TriggersConfig,
)
from raylane.config.training import (
    PBT_MUTABLE,
    SEARCHABLE,
    EarlyStopping,
    ModelConfig,
    ParamSpace,
    PromotionConfig,
    RegistryConfig,
    SchedulerConfig,
    SearchConfig,
    TrainConfig,
    TuneConfig,
    ValidationSplit,
)

__all__ = [
    "ENV_PREFIX",
    "PBT_MUTABLE",
    "SEARCHABLE",
    "TASK_METRICS",
    "AuthConfig",
    "AutoscalingConfig",
    "BackendsConfig",
    "BatchConfig",
    "BatchingConfig",
    "ClusterConfig",
    "ColumnSpec",
    "ColumnType",
    "CpuWorkersConfig",
    "DataConfig",
    "DriftConfig",
    "DuckdbOfflineStore",
    "Duration",
    "EarlyStopping",
    "EntityConfig",
    "FeastBackend",
    "FeatureViewConfig",
    "FeaturesConfig",
    "FileOfflineStore",
    "GpuWorkersConfig",
    "HeadNodeConfig",
    "InferenceLogConfig",
    "JobResources",
    "KubeRayConfig",
    "LabelsConfig",
    "LauncherConfig",
    "MlflowBackend",
    "ModelConfig",
    "MonitorConfig",
    "NodeTypeConfig",
    "ParamSpace",
    "ProjectConfig",
    "ProjectJob",
    "ProjectPath",
    "PromotionConfig",
    "RayBackend",
    "RayOfflineStore",
    "RedisOnlineStore",
    "RegistryConfig",
    "SchedulerConfig",
    "SearchConfig",
    "ServeConfig",
    "SourceConfig",
    "SqliteOnlineStore",
    "TrainConfig",
    "TriggersConfig",
    "TuneConfig",
    "ValidationSplit",
    "config_reference",
    "config_schema",
    "load_config",
]
