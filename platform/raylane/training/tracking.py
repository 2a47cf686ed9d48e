"""What a training run writes to MLflow: the experiment, the run's header, and the logged model.

`ensure_experiment` makes the project's experiment (its artifacts under the storage root with the
embedded SQLite store); `log_run_header` writes the lineage tags, flat parameters and resolved
config of the active run; `log_model` logs a bundle as an MLflow pyfunc (model from code, no
pickles) with its signature, an input example and the whylogs reference profiles monitoring
compares live traffic with.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from raylane.bundle import ModelBundle
from raylane.config import ProjectConfig
from raylane.lineage import RUN_PREFIX, Lineage

__all__ = ["ensure_experiment", "flat_params", "log_model", "log_run_header"]

_PYFUNC = Path(__file__).resolve().parents[1] / "mlflow_model.py"  # raylane/mlflow_model.py


def ensure_experiment(cfg: ProjectConfig) -> Any:
    """The project's MLflow experiment; with the embedded SQLite store its artifacts live under the
    storage root (MLflow's default would be ``./mlruns`` in whatever folder the process runs in)."""
    import mlflow

    mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    mlflow.set_registry_uri(cfg.mlflow_tracking_uri)
    with warnings.catch_warnings():  # SQLAlchemy deprecation noise from MLflow's SQL store import
        warnings.simplefilter("ignore", DeprecationWarning)
        found = mlflow.get_experiment_by_name(cfg.mlflow_experiment)
    if found is None:
        location = (cfg.storage_root / "mlartifacts").as_uri() if cfg.backends.mlflow.tracking_uri is None else None
        mlflow.create_experiment(cfg.mlflow_experiment, artifact_location=location)
    return mlflow.set_experiment(cfg.mlflow_experiment)


def log_run_header(
    cfg: ProjectConfig, lineage: Lineage, extra_tags: dict[str, str] | None = None, *, params: bool = True
) -> None:
    """Lineage tags, flat parameters (unless already logged) and the resolved config of the active MLflow run."""
    import mlflow

    mlflow.set_tags({**lineage.to_tags(RUN_PREFIX), **(extra_tags or {})})
    if params:
        mlflow.log_params(flat_params(cfg))
    mlflow.log_dict(json.loads(cfg.model_dump_json()), "config/project.json")
    mlflow.log_text(cfg.to_yaml(), "config/project.yaml")


def flat_params(cfg: ProjectConfig) -> dict[str, Any]:
    """The ``model`` and ``train`` sections as flat MLflow parameters (``train.early_stopping.patience``…)."""
    out: dict[str, Any] = {}
    for section in ("model", "train"):
        for k, v in getattr(cfg, section).model_dump(mode="json").items():
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    out[f"{section}.{k}.{k2}"] = v2
            else:
                out[f"{section}.{k}"] = v
    return out


def log_model(bundle: ModelBundle, train_raw: Any, features: list[str]) -> str:
    """Log the bundle as an MLflow pyfunc (model from code) with signature, input example and
    whylogs reference profiles of the training features and of the predictions on them."""
    import mlflow
    from mlflow.models import infer_signature

    from raylane.profiling import profile

    sample = train_raw.limit(20_000).to_pandas()
    frame = sample[features]
    pred = bundle.predict(frame)
    with tempfile.TemporaryDirectory(prefix="raylane-bundle-") as tmp:
        folder = bundle.save(Path(tmp) / "bundle")
        reference = frame.copy()
        reference["prediction"] = pred.argmax(1) if pred.ndim == 2 else pred
        (Path(tmp) / "reference_profile.bin").write_bytes(profile(reference).serialize())
        mlflow.log_artifact(str(Path(tmp) / "reference_profile.bin"), artifact_path="monitoring")
        example = plain_dtypes(frame.head(5))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(_PYFUNC),
            artifacts={"bundle": str(folder)},
            signature=infer_signature(example, bundle.predict(example)),
            input_example=example,
            pip_requirements=["raylane", "torch", "pandas"],
        )
    return str(info.model_uri)


def plain_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with numpy dtypes for MLflow's signature: integers as float64 (a feature may be
    null at inference, which an integer column cannot hold), strings as optional objects."""
    out = {}
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            out[name] = col.astype("float64")
        else:
            out[name] = col.astype(object).where(col.notna(), None)
    return pd.DataFrame(out, index=frame.index)
