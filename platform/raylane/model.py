"""The model: one torch MLP for tabular features, and what the task decides (loss, output, metrics).

Inputs are the preprocessed ``x_num`` (scaled numerics and missing indicators) and ``x_cat``
(category indices, 0 = unseen/null), see `raylane.preprocess`. Categorical columns are embedded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from raylane.config import TASK_METRICS, ModelConfig

__all__ = [
    "TabularMLP",
    "build_model",
    "loss_fn",
    "metrics",
    "output_dim",
    "parameter_count",
    "predict_output",
    "primary_metric",
]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}

_LOWER_IS_BETTER = ("rmse", "mae", "log_loss")


class TabularMLP(nn.Module):
    """Embeddings for categorical columns, concatenated with numerics, through an MLP."""

    def __init__(
        self,
        num_width: int,
        cardinalities: list[int],
        *,
        hidden_layers: list[int],
        dropout: float,
        activation: str,
        embedding_dim: int,
        out_dim: int,
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding_dim) for n in cardinalities)
        width = num_width + embedding_dim * len(cardinalities)
        layers: list[nn.Module] = []
        for h in hidden_layers:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        parts = [x_num, *(emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings))]
        return self.net(torch.cat(parts, dim=1))


def output_dim(task: str, classes: list[Any]) -> int:
    return len(classes) if task == "multiclass" else 1


def parameter_count(cfg: ModelConfig, num_width: int, cardinalities: list[int], out_dim: int) -> int:
    """How many parameters `build_model` would allocate, computed without allocating them."""
    count = sum(n * cfg.embedding_dim for n in cardinalities)
    width = num_width + cfg.embedding_dim * len(cardinalities)
    for h in [*cfg.hidden_layers, out_dim]:
        count += width * h + h
        width = h
    return count


def build_model(cfg: ModelConfig, num_width: int, cardinalities: list[int], classes: list[Any]) -> TabularMLP:
    return TabularMLP(
        num_width,
        cardinalities,
        hidden_layers=cfg.hidden_layers,
        dropout=cfg.dropout,
        activation=cfg.activation,
        embedding_dim=cfg.embedding_dim,
        out_dim=output_dim(cfg.task, classes),
    )


def loss_fn(task: str) -> nn.Module:
    if task == "binary":
        return nn.BCEWithLogitsLoss()
    if task == "multiclass":
        return nn.CrossEntropyLoss()  # ignores target -100 (a class unseen in training)
    return nn.MSELoss()


def prepare_target(task: str, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape logits and target for the task's loss."""
    if task == "multiclass":
        return logits, y.long()
    return logits.squeeze(-1), y.float()


def predict_output(task: str, logits: torch.Tensor) -> torch.Tensor:
    """What the model predicts: P(class 1), class probabilities, or the (scaled) value."""
    if task == "binary":
        return torch.sigmoid(logits.squeeze(-1))
    if task == "multiclass":
        return torch.softmax(logits, dim=-1)
    return logits.squeeze(-1)


def primary_metric(task: str, configured: str | None = None) -> tuple[str, str]:
    """The metric used for early stopping and the gate, and ``max`` or ``min``."""
    metric = configured or TASK_METRICS[task][0]
    return metric, "min" if metric in _LOWER_IS_BETTER else "max"


def metrics(task: str, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Holdout metrics: ROC-AUC, log-loss, accuracy (binary); accuracy, macro-F1, log-loss
    (multiclass); RMSE, MAE (regression, in label units)."""
    from sklearn import metrics as sk

    if task == "binary":
        p = np.clip(pred, 1e-7, 1 - 1e-7)
        auc = sk.roc_auc_score(y, p) if len(np.unique(y)) > 1 else float("nan")
        return {
            "roc_auc": float(auc),
            "log_loss": float(sk.log_loss(y, p, labels=[0, 1])),
            "accuracy": float(sk.accuracy_score(y, p >= 0.5)),
        }
    if task == "multiclass":
        keep = y >= 0
        y, pred = y[keep], pred[keep]
        labels = list(range(pred.shape[1]))
        return {
            "accuracy": float(sk.accuracy_score(y, pred.argmax(1))),
            "macro_f1": float(sk.f1_score(y, pred.argmax(1), average="macro", labels=labels, zero_division=0)),
            "log_loss": float(sk.log_loss(y, np.clip(pred, 1e-7, 1), labels=labels)),
        }
    return {"rmse": float(np.sqrt(sk.mean_squared_error(y, pred))), "mae": float(sk.mean_absolute_error(y, pred))}
