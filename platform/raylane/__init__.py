"""raylane: an MLOps platform on Ray.

The public API is small; everything not listed in ``__all__`` may change.

Example::

    from raylane import FeatureRepo, load_config, ray_session

    cfg = load_config("configs/churn.yaml")
    with ray_session(cfg.backends.ray):
        train_ds = FeatureRepo(cfg).training_set()
"""

from raylane._version import __version__
from raylane.config import ProjectConfig, load_config
from raylane.contract import ModelInputs, TextInput
from raylane.errors import (
    ClusterError,
    ConfigError,
    DataError,
    FeatureStoreError,
    RaylaneError,
    UserError,
)

__all__ = [
    "ClusterError",
    "ConfigError",
    "DataError",
    "FeatureRepo",
    "FeatureStoreError",
    "ModelInputs",
    "ProjectConfig",
    "RaylaneError",
    "TextInput",
    "UserError",
    "__version__",
    "ingest",
    "load_config",
    "ray_session",
]


def __getattr__(name: str) -> object:
    # Heavy modules (Ray, Feast) load on first use, so `import raylane` stays fast.
    if name == "FeatureRepo":
        from raylane.features import FeatureRepo

        return FeatureRepo
    if name == "ingest":
        from raylane.ingest import ingest

        return ingest
    if name == "ray_session":
        from raylane.runtime import ray_session

        return ray_session
    raise AttributeError(f"module 'raylane' has no attribute {name!r}")
