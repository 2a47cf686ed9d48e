"""The built-in model, a tabular MLP, and what the task decides (loss, output, metrics) for every model.

The MLP is one model under the contract of `raylane.contract`, built by `tabular_mlp(inputs, **params)`
like a user's own: categorical columns are embedded, concatenated with the numerics (``x_num``:
scaled values and missing indicators) and sent through the hidden layers; text columns are
averaged token embeddings (an ``EmbeddingBag``). Loss, prediction and metrics depend only on the
task, so they serve every model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from raylane.config import TASK_METRICS
from raylane.contract import ModelInputs, output_dim

__all__ = [
    "TabularMLP",
    "compute_loss",
    "loss_fn",
    "metric_value",
    "metrics",
    "output_dim",
    "predict_output",
    "primary_metric",
    "tabular_mlp",
]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}

_LOWER_IS_BETTER = ("rmse", "mae", "log_loss")


class TabularMLP(nn.Module):
    """Embeddings for categorical (and bags of embeddings for text) columns, with the numerics, through an MLP."""

    def __init__(
        self,
        inputs: ModelInputs,
        *,
        hidden_layers: list[int],
        dropout: float,
        activation: str,
        embedding_dim: int,
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding_dim) for n in inputs.cardinalities.values())
        self.text = list(inputs.text)
        self.bags = nn.ModuleList(
            nn.EmbeddingBag(t.vocab_size, embedding_dim, mode="mean", padding_idx=0) for t in inputs.text.values()
        )
        width = inputs.num_width + embedding_dim * (len(inputs.cardinalities) + len(inputs.text))
        layers: list[nn.Module] = []
        for h in hidden_layers:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, inputs.out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x_cat = batch["x_cat"]
        parts = [batch["x_num"], *(emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings))]
        parts += [bag(batch[name]) for name, bag in zip(self.text, self.bags, strict=True)]
        return self.net(torch.cat(parts, dim=1))


def tabular_mlp(
    inputs: ModelInputs,
    *,
    hidden_layers: list[int] = (64, 32),  # type: ignore[assignment]
    dropout: float = 0.1,
    activation: str = "relu",
    embedding_dim: int = 4,
) -> TabularMLP:
    """The built-in model's factory (``model.hidden_layers`` … are its params)."""
    return TabularMLP(
        inputs,
        hidden_layers=list(hidden_layers),
        dropout=dropout,
        activation=activation,
        embedding_dim=embedding_dim,
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
    return logits.reshape(len(y)), y.float()


def compute_loss(model: nn.Module, task: str, criterion: nn.Module, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The model's own ``loss(outputs, target)`` when it has one, else the task's loss."""
    own = getattr(getattr(model, "module", model), "loss", None)
    if callable(own):
        return own(out, y)  # type: ignore[no-any-return]
    return criterion(*prepare_target(task, out, y))  # type: ignore[no-any-return]


def predict_output(task: str, logits: torch.Tensor) -> torch.Tensor:
    """What the model predicts: P(class 1), class probabilities, or the (scaled) value."""
    if task == "binary":
        return torch.sigmoid(logits.reshape(len(logits)))
    if task == "multiclass":
        return torch.softmax(logits, dim=-1)
    return logits.reshape(len(logits))


def primary_metric(task: str, configured: str | None = None) -> tuple[str, str]:
    """The metric used for early stopping and the gate, and ``max`` or ``min``."""
    metric = configured or TASK_METRICS[task][0]
    return metric, "min" if metric in _LOWER_IS_BETTER else "max"


def metrics(task: str, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Holdout metrics: ROC-AUC, log-loss, accuracy (binary); macro-F1, accuracy, log-loss
    (multiclass); RMSE, MAE (regression, in label units)."""
    return {name: metric_value(task, name, y, pred) for name in TASK_METRICS[task]}


def metric_value(task: str, name: str, y: np.ndarray, pred: np.ndarray) -> float:
    """One of `metrics` (the canary's bootstrap computes only the one it judges by)."""
    from sklearn import metrics as sk

    if task == "binary":
        p = np.clip(pred, 1e-7, 1 - 1e-7)
        if name == "roc_auc":
            return float(sk.roc_auc_score(y, p)) if len(np.unique(y)) > 1 else float("nan")
        if name == "log_loss":
            return float(sk.log_loss(y, p, labels=[0, 1]))
        return float(sk.accuracy_score(y, p >= 0.5))
    if task == "multiclass":
        keep = y >= 0
        y, pred = y[keep], pred[keep]
        labels = list(range(pred.shape[1]))
        if name == "macro_f1":
            return float(sk.f1_score(y, pred.argmax(1), average="macro", labels=labels, zero_division=0))
        if name == "log_loss":
            return float(sk.log_loss(y, np.clip(pred, 1e-7, 1), labels=labels))
        return float(sk.accuracy_score(y, pred.argmax(1)))
    if name == "rmse":
        return float(np.sqrt(sk.mean_squared_error(y, pred)))
    return float(sk.mean_absolute_error(y, pred))
