"""A trained model as files: weights, preprocessing and spec, loadable without unpickling.

A bundle is a folder with

- ``model.pt``: the torch ``state_dict`` (loaded with ``torch.load(weights_only=True)``),
- ``preprocessing.json``: the fitted `Preprocessor`,
- ``spec.json``: the model config and input shape.

Training writes it into every checkpoint and logs it with the MLflow model; the promotion gate,
``raylane train --reproduce`` and serving load it the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from raylane.config import ModelConfig
from raylane.model import TabularMLP, build_model, output_dim, parameter_count, predict_output
from raylane.preprocess import Preprocessor

__all__ = ["ModelBundle"]


@dataclass
class ModelBundle:
    """A model with its preprocessing, ready to predict on feature frames."""

    model: TabularMLP
    pre: Preprocessor
    model_cfg: ModelConfig
    features: list[str]

    @classmethod
    def create(cls, model_cfg: ModelConfig, pre: Preprocessor, features: list[str]) -> ModelBundle:
        model = build_model(model_cfg, pre.num_width, pre.cardinalities, pre.classes)
        return cls(model, pre, model_cfg, features)

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in _unwrap(self.model).state_dict().items()}
        torch.save(state, folder / "model.pt")
        (folder / "preprocessing.json").write_text(self.pre.to_json())
        spec = {"model": self.model_cfg.model_dump(mode="json"), "features": self.features, "format": 1}
        (folder / "spec.json").write_text(json.dumps(spec, indent=1))
        return folder

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        """Load a saved bundle. The spec is checked against the weights before any tensor is made:
        a spec that declares more parameters than ``model.pt`` holds is refused.

        Raises:
            ValueError: the spec does not match the weights (a damaged or hostile artifact).
        """
        spec = json.loads((folder / "spec.json").read_text())
        pre = Preprocessor.from_json((folder / "preprocessing.json").read_text())
        model_cfg = ModelConfig.model_validate(spec["model"])
        declared = parameter_count(model_cfg, pre.num_width, pre.cardinalities, output_dim(model_cfg.task, pre.classes))
        held = (folder / "model.pt").stat().st_size
        if declared * 4 > held + (1 << 20):  # float32 weights; 1 MiB for the file's own structure
            raise ValueError(
                f"{folder}: spec.json and preprocessing.json declare {declared:,} parameters,"
                f" but model.pt has only {held:,} bytes; the artifact is damaged or not raylane's"
            )
        bundle = cls.create(model_cfg, pre, spec["features"])
        state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        bundle.model.load_state_dict(state)
        bundle.model.eval()
        return bundle

    def predict(self, frame: pd.DataFrame, batch_size: int = 8192) -> np.ndarray:
        """Predictions for a frame with the feature columns: P(class 1) for binary, class
        probabilities for multiclass, values in label units for regression."""
        self.model.eval()
        outs = []
        with torch.no_grad():
            for start in range(0, len(frame), batch_size):
                x = self.pre.transform(frame.iloc[start : start + batch_size])
                logits = self.model(torch.from_numpy(x["x_num"]), torch.from_numpy(x["x_cat"]))
                outs.append(predict_output(self.pre.task, logits).numpy())
        width = (len(self.pre.classes),) if self.pre.task == "multiclass" else ()
        pred = np.concatenate(outs) if outs else np.zeros((0, *width), dtype=np.float32)
        if self.pre.task == "regression":
            pred = pred * self.pre.target_std + self.pre.target_mean
        return pred

    def target(self, frame: pd.DataFrame) -> np.ndarray:
        """The label of ``frame`` in the form `predict` compares with (class index for multiclass)."""
        y = self.pre.encode_target(frame[self.pre.label])
        if self.pre.task == "regression":
            return frame[self.pre.label].to_numpy(dtype=np.float64)
        return y


def _unwrap(model: Any) -> Any:
    return getattr(model, "module", model)
