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


def log_model(bundle: ModelBundle, train_raw: Any, features: list[str], specs: dict[str, Any]) -> str:
    """Log the bundle (its code included) as an MLflow pyfunc (model from code) with signature,
    input example and whylogs reference profiles of the training features and of the predictions
    on them. ``specs``: each feature's column spec (its dtype and kind)."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema

    from raylane.profiling import profile

    sample = train_raw.limit(20_000).to_pandas()
    frame = sample[features]
    pred = bundle.predict(frame)
    with tempfile.TemporaryDirectory(prefix="raylane-bundle-") as tmp:
        folder = bundle.save(Path(tmp) / "bundle")
        reference = frame.copy()
        reference["prediction"] = pred.argmax(1) if pred.ndim == 2 else pred
        text = [f for f in features if specs[f].is_text]
        (Path(tmp) / "reference_profile.bin").write_bytes(profile(reference, text=text).serialize())
        mlflow.log_artifact(str(Path(tmp) / "reference_profile.bin"), artifact_path="monitoring")
        example = frame.head(5).astype({f: object for f in features if specs[f].dtype in ("string", "bool")})
        out_example = bundle.predict(example)
        from mlflow.models import infer_signature

        outputs = infer_signature(example, pd.DataFrame(out_example) if out_example.ndim == 2 else out_example).outputs
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(_PYFUNC),
            artifacts={"bundle": str(folder)},
            signature=ModelSignature(inputs=Schema([input_spec(f, specs[f].dtype) for f in features]), outputs=outputs),
            input_example=example,
            pip_requirements=["raylane", "torch", "pandas"],
        )
    return str(info.model_uri)


def input_spec(name: str, dtype: str) -> Any:
    """The MLflow column of one feature, optional (a feature may be null at inference) and typed so
    that the data as it comes passes: an integer feature is ``any``, since MLflow has no integer
    type that holds nulls and ``double`` refuses an int64 column (raylane coerces it itself);
    floats are ``double``, strings ``string``, booleans ``boolean``."""
    from mlflow.types.schema import AnyType, ColSpec

    kinds: dict[str, Any] = {"int64": AnyType(), "float64": "double", "string": "string", "bool": "boolean"}
    return ColSpec(kinds.get(dtype, AnyType()), name, required=False)
