"""The MLflow pyfunc model of a raylane bundle, logged as code (MLflow "models from code").

MLflow stores this file with the model and runs it to load, so no Python object is pickled:
the weights load with ``torch.load(weights_only=True)`` and the preprocessing from JSON.
``mlflow.pyfunc.load_model("models:/churn@champion").predict(frame)`` then works anywhere
raylane is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext


class RaylanePyfunc(PythonModel):  # type: ignore[misc]
    """Predicts from a frame of feature columns."""

    def load_context(self, context: PythonModelContext) -> None:
        from raylane.bundle import ModelBundle

        self.bundle = ModelBundle.load(Path(context.artifacts["bundle"]))

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame, params: Any = None) -> Any:
        pred = self.bundle.predict(model_input)
        return pd.DataFrame(pred) if pred.ndim == 2 else pd.Series(pred, name="prediction")


mlflow.models.set_model(RaylanePyfunc())
