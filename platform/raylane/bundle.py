"""A trained model as files: weights, preprocessing, spec and the model's own code, loadable without unpickling.

A bundle is a folder with

- ``model.pt``: the torch ``state_dict`` (loaded with ``torch.load(weights_only=True)``),
- ``preprocessing.json``: the fitted `Preprocessor`,
- ``spec.json``: the model config, the factory's params and the features,
- ``code/``: for an entrypoint model, the model's source as it was at training time
  (`raylane.contract.ModelCode`); loading imports this copy, never the working tree,
- ``loop/``: for a run with ``train.loop``, that loop's source (kept to reproduce the run; never
  imported by loading).

Training writes it into every checkpoint and logs it with the MLflow model; the promotion gate,
``raylane train --reproduce``, serving and batch scoring load it the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from raylane.config import ModelConfig
from raylane.contract import BUILTIN_PARAMS, ModelCode, build
from raylane.model import predict_output, tabular_mlp
from raylane.preprocess import Preprocessor

__all__ = ["ModelBundle", "make_model"]

FORMAT = 2  # 1: the built-in MLP only (no code/, params from the model config); still loaded


def make_model(model_cfg: ModelConfig, pre: Preprocessor, params: dict[str, Any], code: ModelCode | None) -> Any:
    """``factory(inputs, **params)``: the user's factory from ``code``, or the built-in MLP."""
    if code is None:  # the built-in's params are checked like the config's fields (bounded widths)
        ModelConfig.model_validate({**model_cfg.model_dump(), **params})
    factory: Callable[..., Any] = code.factory() if code is not None else tabular_mlp
    where = code.origin if code is not None else "raylane.model:tabular_mlp"
    return build(factory, pre.inputs(), params, where=where)


@dataclass
class ModelBundle:
    """A model with its preprocessing, ready to predict on feature frames."""

    model: Any  # a torch.nn.Module
    pre: Preprocessor
    model_cfg: ModelConfig
    features: list[str]
    params: dict[str, Any]
    code: ModelCode | None = None
    loop: ModelCode | None = None  # train.loop's source: stored for reproduction, not imported here

    @classmethod
    def create(
        cls,
        model_cfg: ModelConfig,
        pre: Preprocessor,
        features: list[str],
        params: dict[str, Any],
        code: ModelCode | None = None,
    ) -> ModelBundle:
        return cls(make_model(model_cfg, pre, params, code), pre, model_cfg, features, params, code)

    @property
    def code_hash(self) -> str:
        return self.code.hash if self.code is not None else ""

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in _unwrap(self.model).state_dict().items()}
        torch.save(state, folder / "model.pt")
        (folder / "preprocessing.json").write_text(self.pre.to_json())
        spec = {
            "model": self.model_cfg.model_dump(mode="json"),
            "params": self.params,
            "features": self.features,
            "code_hash": self.code_hash,
            "loop_hash": self.loop.hash if self.loop is not None else "",
            "format": FORMAT,
        }
        (folder / "spec.json").write_text(json.dumps(spec, indent=1))
        if self.code is not None:
            self.code.save(folder / "code")
        if self.loop is not None:
            self.loop.save(folder / "loop")
        return folder

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        """Load a saved bundle. The model is first built on torch's ``meta`` device (no memory) and
        its size checked against the weights: a spec that declares more parameters than
        ``model.pt`` holds is refused before any tensor is allocated.

        Raises:
            ValueError: the spec does not match the weights or the code (a damaged or hostile artifact).
        """
        spec = json.loads((folder / "spec.json").read_text())
        pre = Preprocessor.from_json((folder / "preprocessing.json").read_text())
        model_cfg = ModelConfig.model_validate(spec["model"])
        code = ModelCode.load(folder / "code") if (folder / "code").is_dir() else None
        if code is not None and spec.get("code_hash") and code.hash != spec["code_hash"]:
            raise ValueError(f"{folder}: code/ does not match the code_hash in spec.json; the artifact was altered")
        params = spec["params"] if "params" in spec else {k: getattr(model_cfg, k) for k in BUILTIN_PARAMS}
        try:
            with torch.device("meta"), _SkipInit():
                declared = sum(t.numel() for t in make_model(model_cfg, pre, params, code).state_dict().values())
        except Exception:  # a user model that cannot be built without memory: its real build is checked below
            declared = 0
        held = (folder / "model.pt").stat().st_size
        if declared * 4 > held + (1 << 20):  # float32 weights; 1 MiB for the file's own structure
            raise ValueError(
                f"{folder}: spec.json and preprocessing.json declare {declared:,} parameters,"
                f" but model.pt has only {held:,} bytes; the artifact is damaged or not raylane's"
            )
        bundle = cls.create(model_cfg, pre, spec["features"], params, code)
        if (folder / "loop").is_dir():
            bundle.loop = ModelCode.load(folder / "loop")
            if spec.get("loop_hash") and bundle.loop.hash != spec["loop_hash"]:
                raise ValueError(f"{folder}: loop/ does not match the loop_hash in spec.json; the artifact was altered")
        state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        try:
            bundle.model.load_state_dict(state)
        except RuntimeError as exc:  # shapes that do not fit: the spec and the weights disagree
            raise ValueError(f"{folder}: model.pt does not fit spec.json; the artifact is damaged: {exc}") from None
        bundle.model.eval()
        return bundle

    def to_best_device(self) -> None:
        """Move the model to this process's GPU, when Ray gave it one (a Serve replica with
        ``serve.resources.num_gpus``, a GPU batch worker); else it stays on the CPU."""
        if torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1"):
            self.model.to("cuda")

    def predict(self, frame: pd.DataFrame, batch_size: int = 8192) -> np.ndarray:
        """Predictions for a frame with the feature columns: P(class 1) for binary, class
        probabilities for multiclass, values in label units for regression. Runs where the
        model's weights are (CPU or GPU)."""
        self.model.eval()
        device = next(iter(self.model.parameters()), torch.empty(0)).device
        outs = []
        with torch.no_grad():
            for start in range(0, len(frame), batch_size):
                x = self.pre.transform(frame.iloc[start : start + batch_size])
                logits = self.model({k: torch.from_numpy(v).to(device) for k, v in x.items()})
                outs.append(predict_output(self.pre.task, logits).cpu().numpy())
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


class _SkipInit(torch.overrides.TorchFunctionMode):
    """Skips ``torch.nn.init`` while a model is built on the ``meta`` device only to count its
    parameters: meta tensors hold no values, and some initializers (``normal_``) would import
    ``torch._dynamo`` to run there (~0.9 s in every process that loads a model)."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def _unwrap(model: Any) -> Any:
    return getattr(model, "module", model)
