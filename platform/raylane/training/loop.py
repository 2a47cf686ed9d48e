"""The worker side of a training run: the function Ray Train runs on every worker, and the context a loop gets.

`train_loop` is what `TorchTrainer` calls; everything it needs comes in its ``config`` dict (built
by `raylane.training.trainer.make_trainer`). It builds a `TrainContext` and hands it to the loop:
``train.loop`` (the user's, imported from its captured code) or `epoch_loop`, raylane's own,
written against the same context. The context holds one worker's state: the model and optimizer
(restored from Ray Train's last checkpoint after a worker failure), the dataset shards (with
``train.cache_data``, read once into tensors from the driver's blocks; else streamed from Ray
Data), early stopping, and rank 0's MLflow logging. `TrainContext.report` evaluates
on the whole validation split (gathered across workers) when the loop did not, checkpoints a
bundle, logs to MLflow, reports to Ray Train (and so to Tune in a sweep) and says when
``train.early_stopping.patience`` epochs did not improve.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from raylane.bundle import ModelBundle
from raylane.model import metrics
from raylane.preprocess import Preprocessor

__all__ = ["TrainContext", "epoch_loop", "train_loop"]

_VAL_BATCH = 4096
# Report keys that are bookkeeping, not metrics: the epoch counters, and the wall-clock times the
# driver's timing table splits the Ray Train run with (start-up, epochs, shut-down).
_NOT_LOGGED = ("epoch", "epochs_completed", "ready_at", "reported_at")


def train_loop(config: dict[str, Any]) -> None:
    """The per-worker function of a Ray Train run (V2). Everything it needs comes in ``config``."""
    from raylane.contract import ModelCode

    ctx = TrainContext(config)
    loop: Callable[[TrainContext], Any] = (
        ModelCode.from_dict(config["loop"]).factory() if config["loop"] else epoch_loop
    )
    loop(ctx)
    if not ctx.reports:
        where = config["loop"]["origin"] if config["loop"] else "raylane's epoch loop"
        raise RuntimeError(f"train.loop {where} returned without calling ctx.report(metrics, epoch): nothing to keep")
    ctx.flush()


def epoch_loop(ctx: TrainContext) -> None:
    """raylane's own training loop: each epoch one pass of ``ctx.train``, then ``ctx.report``."""
    for epoch in ctx.epochs():
        ctx.model.train()
        t0 = time.perf_counter()
        total, count = 0.0, 0
        for batch in ctx.train:
            y = batch.pop("y")
            loss = ctx.loss(ctx.model(batch), y)
            ctx.optimizer.zero_grad()
            loss.backward()
            ctx.optimizer.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        ctx.report({"train_loss": total / max(count, 1), "epoch_seconds": time.perf_counter() - t0}, epoch)


def _equal_share(refs: list[Any], rank: int, world_size: int) -> dict[str, np.ndarray]:
    """Worker ``rank``'s share of a dataset held as blocks (Arrow tables) in Ray's object store:
    rows ``[rank * m, (rank + 1) * m)`` with ``m = rows // world_size``, in the blocks' order. As
    Ray Train's own equal split, every worker gets as many rows (DDP needs as many steps on each)
    and the last ``rows % world_size`` rows are left out. On one node the blocks are read from
    shared memory without a copy; only this worker's rows are converted."""
    import ray
    from ray.data.block import BlockAccessor

    tables = [t for t in ray.get(list(refs)) if t.num_rows]
    share = sum(t.num_rows for t in tables) // world_size
    lo, hi, start, pieces = rank * share, (rank + 1) * share, 0, []
    for table in tables:
        first, last = max(lo, start), min(hi, start + table.num_rows)
        if first < last:
            pieces.append(BlockAccessor.for_block(table.slice(first - start, last - first)).to_numpy())
        start += table.num_rows
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]} if pieces else {}


class _Batches:
    """An iterable of batches: each ``iter()`` is one pass (for training, a fresh shuffle)."""

    def __init__(self, ctx: TrainContext, name: str) -> None:
        self.ctx, self.name, self.passes = ctx, name, 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.name == "val":
            return self.ctx._val_batches()
        epoch = self.ctx.start_epoch + self.passes
        self.passes += 1
        self.ctx._maybe_fail(epoch)
        return self.ctx._train_batches(epoch)


class TrainContext:
    """What a training loop gets, on each Ray Train worker (``train.loop``: docs/models.md).

    Attributes:
        model: The model, prepared by Ray Train: on ``device``, wrapped in DDP when there are
            several workers (``model.module`` is the module itself).
        optimizer: The configured optimizer (``train.optimizer``, ``learning_rate``,
            ``weight_decay``) over the model's parameters; restored with the model after a worker
            failure, so use it (or restore your own from ``start_epoch``).
        train: The worker's training batches: each ``for batch in ctx.train`` is one epoch, freshly
            shuffled. A batch is a dict of tensors on ``device``: ``x_num``, ``x_cat``, one per
            text column and the target ``y``.
        val: The worker's validation batches, in order.
        params: The run's training params: ``epochs``, ``batch_size``, ``lr``, ``weight_decay``,
            ``optimizer``, ``seed``, ``task``, ``metric`` (and ``mode``) the gate compares.
        start_epoch: The first epoch to run: 0, or the one after the last checkpoint when a
            failed worker was replaced and the run resumed.
        device, rank, world_size: This worker's torch device and place in the group.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        import ray.train
        import ray.train.torch
        import torch
        from mlflow import MlflowClient

        from raylane.config import ModelConfig
        from raylane.contract import ModelCode
        from raylane.model import loss_fn

        self.config = config
        train_ctx = ray.train.get_context()
        self.rank, self.world_size = train_ctx.get_world_rank(), train_ctx.get_world_size()
        self.seed = int(config["seed"])
        torch.manual_seed(self.seed + self.rank)
        np.random.seed(self.seed + self.rank)
        self.pre = Preprocessor.from_json(config["pre"])
        code = ModelCode.from_dict(config["code"]) if config["code"] else None
        self.bundle = ModelBundle.create(
            ModelConfig.model_validate(config["model"]), self.pre, config["features"], config["params"], code
        )
        self.bundle.loop = ModelCode.from_dict(config["loop"]) if config["loop"] else None
        optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
        self.optimizer: Any = optimizers[config["optimizer"]](
            self.bundle.model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"]
        )
        self.start_epoch, self.bad, self.resumed_from = 0, 0, -1
        self.best: float | None = None
        self._restore()
        self.model: Any = ray.train.torch.prepare_model(self.bundle.model)
        self.device = ray.train.torch.get_device()
        self.task, self.metric, self.mode = config["task"], config["metric"], config["mode"]
        self.params = {
            k: config[k]
            for k in ("epochs", "batch_size", "lr", "weight_decay", "optimizer", "seed", "task", "metric", "mode")
        }
        self.criterion = loss_fn(self.task)
        self.patience = config["patience"]
        # cache_data: the driver's blocks, by reference (no Ray Data streaming split); else Ray Data's shards
        self.blocks: dict[str, list[Any]] | None = config["blocks"]
        self.shards = (
            {}
            if self.blocks is not None
            else {"train": ray.train.get_dataset_shard("train"), "val": ray.train.get_dataset_shard("val")}
        )
        self.client = MlflowClient(tracking_uri=config["tracking_uri"]) if self.rank == 0 and config["run_id"] else None
        self.mlflow_seconds = 0.0
        self.pending: list[Any] = []
        self.cache: dict[str, dict[str, Any]] = {}
        self.shuffler = torch.Generator().manual_seed(self.seed + self.rank)
        self.train, self.val = _Batches(self, "train"), _Batches(self, "val")
        self.reports, self.should_stop = 0, False
        self.ready_at = time.time()  # the worker group is up: what Ray Train spent before this is start-up

    # ------------------------------------------------------------------ the loop's API

    def epochs(self) -> Iterator[int]:
        """``start_epoch … params["epochs"]-1``, ending early once `report` said to stop."""
        for epoch in range(self.start_epoch, self.config["epochs"]):
            if self.should_stop:
                return
            yield epoch

    def loss(self, outputs: Any, target: Any) -> Any:
        """The training loss: the model's own ``loss(outputs, target)`` if it has one, else the task's."""
        from raylane.model import compute_loss

        return compute_loss(self.model, self.task, self.criterion, outputs, target)

    def report(self, metrics: dict[str, float], epoch: int) -> bool:
        """End an epoch: what raylane's loop does after each one. Returns whether to stop (early stopping).

        Adds the validation metrics over the whole validation split (``val_<metric>`` …) unless
        ``metrics`` has ``val_<params["metric"]>`` already, checkpoints the model, optimizer and
        preprocessing as a bundle (rank 0), logs the metrics to the MLflow run, and reports them
        to Ray Train (and Tune, in a sweep). Every worker must call it, once per epoch.
        """
        values: dict[str, float] = {}
        for key, value in metrics.items():
            try:
                number = float(value)  # a Python or numpy number, or a one-element tensor
            except (TypeError, ValueError, RuntimeError):
                number = math.nan
            if isinstance(value, bool | str) or not math.isfinite(number):
                raise ValueError(f"ctx.report: metric {key!r} is {value!r}; report finite numbers only")
            values[str(key)] = number
        if f"val_{self.metric}" not in values:
            values.update({f"val_{k}": v for k, v in self.evaluate().items()})
        self._track(values[f"val_{self.metric}"])
        report = {
            "epoch": epoch,
            "epochs_completed": epoch + 1,
            **values,
            "resumed_from": self.resumed_from,
            "ready_at": self.ready_at,
            "reported_at": time.time(),
        }
        self._log(report, epoch)
        self._report(report, epoch)
        self.reports += 1
        self.should_stop = bool(self.patience and self.bad >= self.patience)
        return self.should_stop

    def _restore(self) -> None:
        """Continue from Ray Train's last checkpoint (after a worker failure, a resumed trial, or a PBT copy)."""
        import ray.train
        import torch

        ckpt, copied = ray.train.get_checkpoint(), False
        if not ckpt and self.config.get("start_from"):
            ckpt, copied = ray.train.Checkpoint(self.config["start_from"]), True
        if not ckpt:
            return
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / "state.pt", map_location="cpu", weights_only=True)
        self.bundle.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # this run's settings (PBT may have changed them)
            group["lr"], group["weight_decay"] = self.config["lr"], self.config["weight_decay"]
        self.start_epoch, self.best, self.bad = state["epoch"] + 1, state["best"], state["bad"]
        self.resumed_from = state["epoch"]
        if copied:  # a PBT copy of a trial that had trained every epoch retrains the last one with its params
            self.start_epoch = min(self.start_epoch, self.config["epochs"] - 1)

    def _maybe_fail(self, epoch: int) -> None:
        """A worker dies mid-run when the fault-tolerance test asks for it (once: a marker file)."""
        faults = self.config.get("faults") or {}
        if (
            faults
            and epoch == faults["epoch"]
            and self.rank == self.world_size - 1
            and not Path(faults["marker"]).exists()
        ):
            Path(faults["marker"]).write_text(str(epoch))
            os._exit(1)

    # ------------------------------------------------------------------ data

    def _tensors(self, name: str) -> dict[str, Any]:
        # Read the shard once and keep it as tensors on the device: later epochs then cost what a
        # plain torch loop costs instead of a Ray Data pass each (train.cache_data).
        import torch

        if name not in self.cache:
            if self.blocks is not None:
                arrays = _equal_share(self.blocks[name], self.rank, self.world_size)
                self.cache[name] = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
            else:
                parts = list(self.shards[name].iter_torch_batches(batch_size=8192, device=self.device))
                self.cache[name] = {k: torch.cat([p[k] for p in parts]) for k in parts[0]} if parts else {}
        return self.cache[name]

    def _train_batches(self, epoch: int) -> Iterator[dict[str, Any]]:
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

    def _val_batches(self) -> Iterator[dict[str, Any]]:
        if not self.config["cache_data"]:
            yield from self.shards["val"].iter_torch_batches(batch_size=_VAL_BATCH, device=self.device)
            return
        data = self._tensors("val")
        for i in range(0, len(data.get("y", ())), _VAL_BATCH):
            yield {k: v[i : i + _VAL_BATCH] for k, v in data.items()}

    # ------------------------------------------------------------------ one epoch

    def evaluate(self) -> dict[str, float]:
        """The validation metrics over the whole validation split (every worker's shard)."""
        import torch

        from raylane.model import predict_output

        self.model.eval()
        preds, ys = [], []
        with torch.no_grad():
            for batch in self._val_batches():
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
        if self.world_size == 1:
            return local
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, local)
        return (
            np.concatenate([g[0] for g in gathered if len(g[0])]),
            np.concatenate([g[1] for g in gathered if len(g[1])]),
        )

    def _track(self, score: float) -> None:
        """Early stopping's bookkeeping: the best score so far and the epochs since it improved."""
        delta = self.config["min_delta"]
        best = self.best
        improved = best is None or (score > best + delta if self.mode == "max" else score < best - delta)
        if improved:
            self.best, self.bad = score, 0
        else:
            self.bad += 1

    # ------------------------------------------------------------------ reporting

    def _log(self, report: dict[str, float], epoch: int) -> None:
        """Rank 0 starts writing the epoch's metrics to the MLflow run (written while the checkpoint is saved)."""
        if self.client is None:
            return
        from mlflow.entities import Metric

        t_log = time.perf_counter()
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, epoch) for k, v in report.items() if k not in _NOT_LOGGED]
        batch.append(Metric("mlflow_log_seconds", self.mlflow_seconds, now, epoch))  # the logging before this one
        self.pending.append(self.client.log_batch(self.config["run_id"], metrics=batch, synchronous=False))
        self.mlflow_seconds += time.perf_counter() - t_log

    def _report(self, report: dict[str, float], epoch: int) -> None:
        """Report the epoch to Ray Train, with rank 0's checkpoint (state for resuming, and the bundle)."""
        import ray.train
        import torch

        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if self.rank == 0:
                raw = getattr(self.model, "module", self.model)
                state = {"model": raw.state_dict(), "optimizer": self.optimizer.state_dict()}
                torch.save({**state, "epoch": epoch, "best": self.best, "bad": self.bad}, Path(d) / "state.pt")
                self.bundle.model = raw
                self.bundle.save(Path(d) / "bundle")
                checkpoint = ray.train.Checkpoint.from_directory(d)
            # What Ray Train (and Tune) sees is in MLflow already: a trial that Tune's scheduler
            # stops on this report is killed at once, and a write still in flight would be lost.
            self.flush()
            ray.train.report(report, checkpoint=checkpoint)

    def flush(self) -> None:
        """Wait until every metric logged so far is written (rank 0; the wait counts as logging time)."""
        t_wait = time.perf_counter()
        while self.pending:
            self.pending.pop(0).wait()
        self.mlflow_seconds += time.perf_counter() - t_wait
