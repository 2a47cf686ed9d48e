"""Training benchmark: Ray Train (1 worker) against a plain torch loop on the same data and model.

The model is the tickets example's own module (`configs/models/ticket_net.py:TicketNet`, text
features and its own loss) by default, or the churn example's built-in MLP (`--example churn`).
Reports, on the same machine in one process:
- steady-state epoch time (median over epochs after the first) of the training pass:
  Ray Train worker (raylane's epoch loop over the worker's cached shard) vs a plain loop over
  in-memory tensors with the same module; target ratio <= 1.1;
- MLflow logging time as a share of training time (target <= 2%);
- start-up overhead of Ray Train (fit wall time minus the epochs), reported apart.

Run: `make bench` or `.venv/bin/python benchmarks/train.py [--example tickets|churn] [--size medium] [--epochs 8]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from raylane import runtime
from raylane.bundle import ModelBundle
from raylane.contract import factory_params
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.model import compute_loss, loss_fn
from raylane.testing import example_project
from raylane.training import prepare, train


def plain_torch(cfg, prep, epochs: int) -> list[float]:  # type: ignore[no-untyped-def]
    """The same module, preprocessing and batches in a plain torch loop (no Ray)."""
    arrays = prep.pre.batch(prep.train_raw.to_pandas())
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    y = tensors.pop("y")
    torch.manual_seed(cfg.train.seed)
    model = ModelBundle.create(cfg.model, prep.pre, prep.features, factory_params(cfg), prep.code).model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay)
    criterion = loss_fn(cfg.model.task)
    bs = cfg.train.batch_size
    times = []
    shuffler = torch.Generator().manual_seed(cfg.train.seed)
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(y), generator=shuffler)  # a fresh shuffle per epoch, as Ray Train's loop
        for i in range(0, len(y), bs):
            idx = order[i : i + bs]
            loss = compute_loss(
                model, cfg.model.task, criterion, model({k: v[idx] for k, v in tensors.items()}), y[idx]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--example", choices=["tickets", "churn"], default="tickets")
    parser.add_argument("--size", default="medium")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the Ray Train worker reserves one CPU; compare like with like
    with tempfile.TemporaryDirectory(prefix="raylane-bench-") as tmp:
        # raylane's epoch loop (it times the training pass), not the example's own train.loop
        overrides = [f"train.epochs={args.epochs}", "train.early_stopping=null", "train.loop=null"]
        cfg = example_project(Path(tmp), size=args.size, overrides=overrides, example=args.example)
        with runtime.ray_session(cfg.backends.ray):
            ingest(cfg)
            repo = FeatureRepo(cfg)
            repo.apply()
            prep = prepare(cfg)
            rows = prep.train_raw.count()
            plain = plain_torch(cfg, prep, args.epochs)
            t0 = time.perf_counter()
            result = train(cfg, register=False)
            wall = time.perf_counter() - t0
            from mlflow import MlflowClient

            client = MlflowClient(cfg.mlflow_tracking_uri)
            epochs = [
                m.value for m in sorted(client.get_metric_history(result.run_id, "epoch_seconds"), key=lambda m: m.step)
            ]
            logs = client.get_metric_history(result.run_id, "mlflow_log_seconds")
            log_s = max((m.value for m in logs), default=0.0)
    plain_ss, ray_ss = statistics.median(plain[1:]), statistics.median(epochs[1:])
    model = cfg.model.entrypoint.rpartition("/")[2] if cfg.model.entrypoint else "the built-in MLP"
    print(
        f"{args.example}: {model}, training rows {rows:,}, batch {cfg.train.batch_size},"
        f" {args.epochs} epochs, torch threads 1"
    )
    print(
        f"steady-state epoch: plain torch {plain_ss:.3f} s, Ray Train {ray_ss:.3f} s, "
        f"ratio {ray_ss / plain_ss:.3f} (target <= 1.1)"
    )
    train_s = sum(epochs)
    print(f"MLflow logging {log_s:.3f} s of {train_s:.2f} s training = {100 * log_s / train_s:.2f}% (target <= 2%)")
    stages = dict(result.timings.rows())
    print(
        f"Ray Train start-up {stages.get('worker-group start', 0.0):.1f} s, wrap-up"
        f" {stages.get('worker-group stop', 0.0):.1f} s; the whole train() {wall:.1f} s of which epochs"
        f" {train_s:.1f} s (the rest: training set, preprocessing, evaluation, model logging)"
    )
    print(
        f"holdout: {', '.join(f'{k} {v:.4f}' for k, v in result.metrics.items())}; "
        f"plain epochs {np.round(plain, 3).tolist()}, Ray epochs {np.round(epochs, 3).tolist()}"
    )


if __name__ == "__main__":
    main()
