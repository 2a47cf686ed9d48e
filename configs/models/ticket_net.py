"""The tickets example's model: a user entrypoint under raylane's model contract (docs/models.md).

``TicketNet(inputs, **model.params)`` reads each text column as a bag of token embeddings
(``EmbeddingBag``, mean over the non-padding tokens), embeds each categorical column, and sends
them with the numeric inputs through a small MLP to one logit per team. Its own ``loss`` adds
label smoothing to the cross-entropy raylane would use. ``train_loop`` is its own training loop.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from raylane import ModelInputs

if TYPE_CHECKING:
    from raylane.training import TrainContext


class TicketNet(nn.Module):
    def __init__(
        self,
        inputs: ModelInputs,
        *,
        embedding_dim: int = 32,
        hidden: int = 64,
        dropout: float = 0.1,
        label_smoothing: float = 0.05,
    ) -> None:
        super().__init__()
        self.text = list(inputs.text)
        self.bags = nn.ModuleDict(
            {
                name: nn.EmbeddingBag(t.vocab_size, embedding_dim, mode="mean", padding_idx=0)
                for name, t in inputs.text.items()
            }
        )
        self.categorical = nn.ModuleList(nn.Embedding(n, 4) for n in inputs.cardinalities.values())
        width = embedding_dim * len(self.text) + 4 * len(self.categorical) + inputs.num_width
        self.head = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, inputs.out_dim)
        )
        self.label_smoothing = label_smoothing

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [self.bags[name](batch[name]) for name in self.text]
        parts += [emb(batch["x_cat"][:, i]) for i, emb in enumerate(self.categorical)]
        parts.append(batch["x_num"])
        return self.head(torch.cat(parts, dim=1))

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # target -100: a class the training split never saw (ignored, like raylane's default loss)
        return F.cross_entropy(outputs, target.long(), label_smoothing=self.label_smoothing, ignore_index=-100)


def train_loop(ctx: TrainContext) -> None:
    """The tickets example's own training loop (``train.loop``): raylane's epoch loop plus gradient
    clipping and a cosine learning-rate schedule over the run's epochs.

    ``ctx`` gives the prepared model, the optimizer, the batches and ``report``, which validates,
    checkpoints, logs and early-stops. The schedule is a function of the epoch, so a run resumed
    at ``ctx.start_epoch`` after a worker failure continues it exactly.
    """
    peak, epochs = ctx.params["lr"], ctx.params["epochs"]
    for epoch in ctx.epochs():
        lr = peak * (1 + math.cos(math.pi * epoch / epochs)) / 2
        for group in ctx.optimizer.param_groups:
            group["lr"] = lr
        ctx.model.train()
        total, count = 0.0, 0
        for batch in ctx.train:
            target = batch.pop("y")
            loss = ctx.loss(ctx.model(batch), target)
            ctx.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(ctx.model.parameters(), max_norm=1.0)
            ctx.optimizer.step()
            total += float(loss.detach()) * len(target)
            count += len(target)
        ctx.report({"train_loss": total / max(count, 1), "lr": lr}, epoch)
