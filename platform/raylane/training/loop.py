"""The worker side of a training run: the per-worker loop Ray Train runs on every worker.

`train_loop` is what `TorchTrainer` calls; everything it needs comes in its ``config`` dict (built
by `raylane.training.trainer.make_trainer`). `_Worker` holds one worker's state: the model and
optimizer (restored from Ray Train's last checkpoint after a worker failure), the dataset shards
(read once into tensors when ``train.cache_data``), early stopping, and rank 0's asynchronous
MLflow logging. Each epoch trains, evaluates on the whole validation split (gathered across
workers), reports to Ray Train with a checkpoint (weights, optimizer, preprocessing as a bundle),
and stops when ``train.early_stopping.patience`` epochs did not improve.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from raylane.bundle import ModelBundle
from raylane.model import metrics
from raylane.preprocess import Preprocessor

__all__ = ["train_loop"]

_VAL_BATCH = 4096
# Report keys that are bookkeeping, not metrics: the epoch counters, and the wall-clock times the
# driver's timing table splits the Ray Train run with (start-up, epochs, shut-down).
_NOT_LOGGED = ("epoch", "epochs_completed", "ready_at", "reported_at")


def train_loop(config: dict[str, Any]) -> None:
    """The per-worker training loop (Ray Train V2). Everything it needs comes in ``config``."""
    worker = _Worker(config)
    ready_at = time.time()  # the worker group is up: what Ray Train spent before this is start-up
    for epoch in range(worker.start, config["epochs"]):
        worker.maybe_fail(epoch)
        t0 = time.perf_counter()
        train_loss = worker.train_epoch(epoch)
        train_seconds = time.perf_counter() - t0
        val = worker.evaluate()
        worker.track(val[worker.metric])
        report = {
            "epoch": epoch,
            "epochs_completed": epoch + 1,
            "train_loss": train_loss,
            **{f"val_{k}": v for k, v in val.items()},
            "epoch_seconds": train_seconds,
            "resumed_from": worker.resumed_from,
            "ready_at": ready_at,
            "reported_at": time.time(),
        }
        worker.log(report, epoch)
        worker.report(report, epoch)
        if worker.patience and worker.bad >= worker.patience:
            break
    worker.flush()


class _Worker:
    """One training worker's state across epochs."""

    def __init__(self, config: dict[str, Any]) -> None:
        import ray.train
        import ray.train.torch
        import torch
        from mlflow import MlflowClient

        from raylane.config import ModelConfig
        from raylane.contract import ModelCode
        from raylane.model import loss_fn

        self.config = config
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.seed = int(config["seed"])
        torch.manual_seed(self.seed + self.rank)
        np.random.seed(self.seed + self.rank)
        self.pre = Preprocessor.from_json(config["pre"])
        code = ModelCode.from_dict(config["code"]) if config["code"] else None
        self.bundle = ModelBundle.create(
            ModelConfig.model_validate(config["model"]), self.pre, config["features"], config["params"], code
        )
        optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
        self.opt = optimizers[config["optimizer"]](
            self.bundle.model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"]
        )
        self.start, self.bad, self.resumed_from = 0, 0, -1
        self.best: float | None = None
        self._restore()
        self.model: Any = ray.train.torch.prepare_model(self.bundle.model)
        self.device = ray.train.torch.get_device()
        self.task, self.metric, self.mode = config["task"], config["metric"], config["mode"]
        self.criterion = loss_fn(self.task)
        self.patience = config["patience"]
        self.shards = {"train": ray.train.get_dataset_shard("train"), "val": ray.train.get_dataset_shard("val")}
        self.client = MlflowClient(tracking_uri=config["tracking_uri"]) if self.rank == 0 and config["run_id"] else None
        self.mlflow_seconds = 0.0
        self.pending: list[Any] = []
        self.cache: dict[str, dict[str, Any]] = {}
        self.shuffler = torch.Generator().manual_seed(self.seed + self.rank)

    def _restore(self) -> None:
        """Continue from Ray Train's last checkpoint (after a worker failure, or a resumed trial)."""
        import ray.train
        import torch

        ckpt = ray.train.get_checkpoint()
        if not ckpt:
            return
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / "state.pt", map_location="cpu", weights_only=True)
        self.bundle.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.start, self.best, self.bad = state["epoch"] + 1, state["best"], state["bad"]
        self.resumed_from = state["epoch"]

    def maybe_fail(self, epoch: int) -> None:
        """A worker dies mid-run when the fault-tolerance test asks for it (once: a marker file)."""
        faults = self.config.get("faults") or {}
        if faults and epoch == faults["epoch"] and self.rank == self.world - 1 and not Path(faults["marker"]).exists():
            Path(faults["marker"]).write_text(str(epoch))
            os._exit(1)

    # ------------------------------------------------------------------ data

    def _tensors(self, name: str) -> dict[str, Any]:
        # Read the shard once and keep it as tensors on the device: later epochs then cost what a
        # plain torch loop costs instead of a Ray Data pass each (train.cache_data).
        import torch

        if name not in self.cache:
            parts = list(self.shards[name].iter_torch_batches(batch_size=8192, device=self.device))
            self.cache[name] = {k: torch.cat([p[k] for p in parts]) for k in parts[0]} if parts else {}
        return self.cache[name]

    def train_batches(self, epoch: int) -> Iterator[dict[str, Any]]:
        import torch

        bs = self.config["batch_size"]
        if not self.config["cache_data"]:
            yield from self.shards["train"].iter_torch_batches(
                batch_size=bs,
                device=self.device,
                local_shuffle_buffer_size=4 * bs,
                local_shuffle_seed=self.seed + epoch,
            )
            return
        data = self._tensors("train")
        if not data:
            return
        order = torch.randperm(len(data["y"]), generator=self.shuffler).to(data["y"].device)
        for i in range(0, len(order), bs):
            idx = order[i : i + bs]
            yield {k: v[idx] for k, v in data.items()}

    def val_batches(self) -> Iterator[dict[str, Any]]:
        if not self.config["cache_data"]:
            yield from self.shards["val"].iter_torch_batches(batch_size=_VAL_BATCH, device=self.device)
            return
        data = self._tensors("val")
        for i in range(0, len(data.get("y", ())), _VAL_BATCH):
            yield {k: v[i : i + _VAL_BATCH] for k, v in data.items()}

    # ------------------------------------------------------------------ one epoch

    def train_epoch(self, epoch: int) -> float:
        """One pass over the training shard; the mean training loss."""
        from raylane.model import compute_loss

        self.model.train()
        total, count = 0.0, 0
        for batch in self.train_batches(epoch):
            y = batch.pop("y")
            loss = compute_loss(self.model, self.task, self.criterion, self.model(batch), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        return total / max(count, 1)

    def evaluate(self) -> dict[str, float]:
        """The validation metrics over the whole validation split (every worker's shard)."""
        import torch

        from raylane.model import predict_output

        self.model.eval()
        preds, ys = [], []
        with torch.no_grad():
            for batch in self.val_batches():
                y = batch.pop("y")
                preds.append(predict_output(self.task, self.model(batch)).cpu().numpy())
                ys.append(y.cpu().numpy())
        local = (np.concatenate(preds) if preds else np.zeros(0), np.concatenate(ys) if ys else np.zeros(0))
        pred_all, y_all = self._gather(local)
        if self.task == "regression":
            pred_all = pred_all * self.pre.target_std + self.pre.target_mean
            y_all = y_all * self.pre.target_std + self.pre.target_mean
        return metrics(self.task, y_all, pred_all)

    def _gather(self, local: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if self.world == 1:
            return local
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, local)
        return (
            np.concatenate([g[0] for g in gathered if len(g[0])]),
            np.concatenate([g[1] for g in gathered if len(g[1])]),
        )

    def track(self, score: float) -> None:
        """Early stopping's bookkeeping: the best score so far and the epochs since it improved."""
        delta = self.config["min_delta"]
        best = self.best
        improved = best is None or (score > best + delta if self.mode == "max" else score < best - delta)
        if improved:
            self.best, self.bad = score, 0
        else:
            self.bad += 1

    # ------------------------------------------------------------------ reporting

    def log(self, report: dict[str, float], epoch: int) -> None:
        """Rank 0 logs the epoch's metrics to the MLflow run, asynchronously (written while the next epoch trains)."""
        if self.client is None:
            return
        from mlflow.entities import Metric

        t_log = time.perf_counter()
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, epoch) for k, v in report.items() if k not in _NOT_LOGGED]
        batch.append(Metric("mlflow_log_seconds", self.mlflow_seconds, now, epoch))  # the logging before this one
        self.pending.append(self.client.log_batch(self.config["run_id"], metrics=batch, synchronous=False))
        self.mlflow_seconds += time.perf_counter() - t_log

    def report(self, report: dict[str, float], epoch: int) -> None:
        """Report the epoch to Ray Train, with rank 0's checkpoint (state for resuming, and the bundle)."""
        import ray.train
        import torch

        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if self.rank == 0:
                raw = getattr(self.model, "module", self.model)
                state = {"model": raw.state_dict(), "optimizer": self.opt.state_dict()}
                torch.save({**state, "epoch": epoch, "best": self.best, "bad": self.bad}, Path(d) / "state.pt")
                self.bundle.model = raw
                self.bundle.save(Path(d) / "bundle")
                checkpoint = ray.train.Checkpoint.from_directory(d)
            ray.train.report(report, checkpoint=checkpoint)

    def flush(self) -> None:
        """Every metric is written before the run ends."""
        for op in self.pending:
            op.wait()
